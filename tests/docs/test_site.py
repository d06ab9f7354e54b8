"""The documentation site: generated references cover the code, and a strict build fails on broken links.

The full site is built by ``.ci/run`` (``mkdocs build --strict`` and ``docs/scripts/check_site.py``); here the same
build runs only with ``-m slow``. The other tests build small sites with this repository's ``mkdocs.yml`` settings
(theme, Markdown extensions, link validation) in a temporary folder, in a few seconds each.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "docs" / "scripts"


def _load(name: str):
    module_name = f"brain_mtl_docs_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


gen = _load("gen_reference")
check = _load("check_site")

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason='the site needs mkdocs and mkdocs-material: pip install -e ".[docs]"',
)


# ------------------------------------------------------------------------------------------------ API reference
def _rendered_members(pages: dict[str, str]) -> dict[str, set[str]]:
    """``::: module`` blocks of the generated pages -> the names each renders in full."""
    rendered: dict[str, set[str]] = {}
    for text in pages.values():
        blocks = text.split("::: ")[1:]
        for block in blocks:
            module = block.split()[0]
            members_line = next(line for line in block.splitlines() if line.strip().startswith("members:"))
            value = members_line.split(":", 1)[1].strip()
            rendered[module] = set() if value == "false" else {n.strip() for n in value.strip("[]").split(",")}
    return rendered


def test_every_name_of_every___all___is_in_the_generated_api_reference(capsys):
    exports, skipped = check.runtime_exports("brain_mtl")
    plan = gen.plan_api()
    pages = gen.api_pages(plan)
    rendered = _rendered_members(pages)
    total = sum(len(names) for names in exports.values())
    covered = 0
    for module, names in exports.items():
        for name in names:
            target = plan.canonical.get((module, name))
            assert target is not None, f"{module}.{name} is in __all__ but not in the API reference"
            home, _, home_name = target.rpartition(".")
            assert home_name in rendered[home], f"{target} is not rendered on its page"
            if target != f"{module}.{name}":  # documented elsewhere: this module's section links there
                assert f"[`{name}`][{target}]" in pages[f"{gen.API_DIR}/{plan.modules[module].group}.md"]
            covered += 1
    with capsys.disabled():
        print(f"\nAPI reference: {covered} of {total} names of __all__ lists covered; not importable here: {skipped}")
    assert covered == total > 100
    # Every module the package has is on a page (e.g. brain_mtl.models, brain_mtl.task.losses).
    assert {"brain_mtl", "brain_mtl.models", "brain_mtl.data", "brain_mtl.inference", "brain_mtl.evaluation"} <= set(
        exports
    )
    assert {
        "brain_mtl.task.losses",
        "brain_mtl.task.metrics",
        "brain_mtl.evaluation.metrics",
        "brain_mtl.callbacks",
    } <= set(rendered)


def test_each_object_is_documented_once_and_re_exports_link_to_it():
    plan = gen.plan_api()
    documented = [f"{m}.{n}" for m, names in plan.documented_here.items() for n in names]
    assert len(documented) == len(set(documented))
    # The front door documents only what nothing else exports; the rest links to the package that does.
    assert plan.canonical[("brain_mtl", "UNet")] == "brain_mtl.models.UNet"
    assert plan.canonical[("brain_mtl.models.unet", "UNet")] == "brain_mtl.models.UNet"
    assert plan.canonical[("brain_mtl", "__version__")] == "brain_mtl.__version__"


def test_among_equally_short_exports_the_package_that_defines_the_object_documents_it(tmp_path):
    pkg = tmp_path / "pkg2"
    for sub in ("alpha", "zeta"):
        (pkg / sub).mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Pkg."""\n')
    (pkg / "zeta" / "impl.py").write_text('"""Impl."""\n\n\ndef thing():\n    """Do."""\n')
    (pkg / "zeta" / "__init__.py").write_text('"""Z."""\nfrom pkg2.zeta.impl import thing\n__all__ = ["thing"]\n')
    (pkg / "alpha" / "__init__.py").write_text('"""A."""\nfrom pkg2.zeta.impl import thing\n__all__ = ["thing"]\n')
    plan = gen.plan_api(gen.discover(tmp_path, "pkg2"))
    # Alphabetically pkg2.alpha comes first, but the object lives in pkg2.zeta: that page documents it.
    assert plan.canonical[("pkg2.alpha", "thing")] == "pkg2.zeta.thing"


def test_a_module_added_later_appears_without_editing_the_docs(tmp_path):
    # A package laid out like brain_mtl after a restructure: new sub-packages, moved names, a dynamic __all__.
    pkg = tmp_path / "pkg"
    (pkg / "commands").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        '"""Pkg."""\nfrom pkg.commands.synth import synth_main\n__all__ = ["synth_main"]\n'
    )
    (pkg / "commands" / "__init__.py").write_text(
        '"""Commands."""\nfrom pkg.commands.synth import synth_main\n__all__ = ["synth_main"]\n'
    )
    (pkg / "commands" / "synth.py").write_text(
        '"""Synth."""\nNAMES = ["synth_main"]\n__all__ = list(NAMES)\n\ndef synth_main():\n    """Run."""\n'
    )
    (pkg / "__main__.py").write_text("raise SystemExit('never imported')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        plan = gen.plan_api(gen.discover(tmp_path, "pkg"))
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
            del sys.modules[name]
    assert set(plan.modules) == {"pkg", "pkg.commands", "pkg.commands.synth"}
    assert plan.canonical[("pkg.commands.synth", "synth_main")] == "pkg.commands.synth_main"
    pages = gen.api_pages(plan)
    assert set(pages) == {"api/index.md", "api/pkg.md", "api/pkg.commands.md"}
    assert "[`synth_main`][pkg.commands.synth_main]" in pages["api/pkg.md"]


# ----------------------------------------------------------------------------------------- configuration reference
def test_the_configuration_reference_has_every_key_of_model_data_and_each_subcommand():
    import inspect

    import brain_mtl

    text = gen.render_config_reference()
    for cls in (brain_mtl.BrainTumorModule, brain_mtl.BrainTumorDataModule):
        for name in inspect.signature(cls.__init__).parameters:
            if name != "self":
                assert f"| `{name}` |" in text, f"{cls.__name__}.{name} is missing from the configuration reference"
    for name, _ in gen.subcommands():
        assert f"### `{name}`" in text
    for flag in ("--ckpt_path", "--root", "--output", "--format"):  # fit/test, synth/check-data, export
        assert f"`{flag}" in text
    for key in ("trainer.precision", "trainer.max_epochs", "trainer.callbacks"):
        assert f"`{key}`" in text
    assert "### `RunCheckpoint`" in text and "### `EvaluationReport`" in text


def test_help_texts_of_argparse_and_jsonargparse_are_both_read():
    argparse_help = textwrap.dedent(
        """\
        usage: x [-h] --root ROOT

        options:
          -h, --help            show this help message and exit
          --root ROOT           output folder
          --a-very-long-option-name VALUE
                                its help, on the next line,
                                over two lines
        """
    )
    assert gen.parse_help(argparse_help) == [
        ("-h, --help", "show this help message and exit"),
        ("--root ROOT", "output folder"),
        ("--a-very-long-option-name VALUE", "its help, on the next line, over two lines"),
    ]
    jsonargparse_help = "options:\n  --model.lr LR         learning rate. (type: float, default: 0.0001)\n"
    assert gen.parse_help(jsonargparse_help) == [("--model.lr LR", "learning rate. (type: float, default: 0.0001)")]


# ------------------------------------------------------------------------------------------------ strict builds
def _mini_site(tmp_path: Path, index: str) -> Path:
    """A two-page site that inherits this repository's mkdocs.yml settings, without the generated reference."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(f"# Home\n\n{index}\n")
    (docs / "other.md").write_text("# Other\n\n## A section\n\nText.\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {REPO / 'mkdocs.yml'}\n"
        f"docs_dir: {docs}\n"
        "hooks: []\n"
        "plugins: [search, autorefs]\n"
        "nav: [{Home: index.md}, {Other: other.md}]\n"
    )
    return config


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@needs_mkdocs
def test_strict_build_passes_with_good_links(tmp_path):
    result = _build(_mini_site(tmp_path, "See [the other page](other.md#a-section)."), tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "other.html").exists()


@needs_mkdocs
@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("[a missing page](missing.md)", "missing.md"),
        ("[a missing section](other.md#no-such-section)", "no-such-section"),
        ("[an unknown API name][brain_mtl.NoSuchName]", "brain_mtl.NoSuchName"),
    ],
    ids=["page", "anchor", "api-reference"],
)
def test_a_broken_link_fails_the_strict_build(tmp_path, link, message):
    result = _build(_mini_site(tmp_path, f"See {link}."), tmp_path / "site")
    assert result.returncode != 0, "a strict build passed with a broken link"
    output = result.stdout + result.stderr
    assert "WARNING" in output and message in output and "Aborted" in output, output


@pytest.mark.slow
@needs_mkdocs
def test_the_real_site_builds_strictly_and_covers_the_api(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    documented, exported, missing = check.api_coverage(site)
    assert missing == [] and documented == exported
    assert check.external_assets(site) == []


def test_the_readme_links_to_files_that_exist():
    # README.md is outside the site, so the strict build does not check its links: this does.
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert "docs/getting-started.md" in local
    missing = [t for t in local if not (REPO / t).exists()]
    assert missing == []


def test_sphinx_roles_of_docstrings_become_code():
    assert gen.plain_roles("see :class:`~brain_mtl.data.errors.DatasetError`") == "see `DatasetError`"
    assert gen.plain_roles(":meth:`Predictor.predict_batch` and :mod:`brain_mtl.models.tta`") == (
        "`Predictor.predict_batch` and `brain_mtl.models.tta`"
    )
    assert gen.plain_roles("plain ``code`` stays") == "plain ``code`` stays"


@needs_mkdocs
def test_pages_missing_from_the_nav_are_added_and_the_api_nav_is_generated(tmp_path):
    # docs/app.md (or any later page) needs no edit of mkdocs.yml to be built, link-checked and reachable.
    hooks = _load("hooks")
    (tmp_path / "index.md").write_text("# Home\n")
    (tmp_path / "app.md").write_text("# The web app\n")
    config = {"docs_dir": str(tmp_path), "nav": [{"Home": "index.md"}, {"API reference": "api/index.md"}]}
    nav = hooks.on_config(config)["nav"]
    assert nav[0] == {"Home": "index.md"}
    api = nav[1]["API reference"]
    assert api[0] == {"Overview": "api/index.md"} and {"brain_mtl.models": "api/brain_mtl.models.md"} in api
    assert nav[-1] == {"More": [{"The web app": "app.md"}]}
