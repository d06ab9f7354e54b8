"""MkDocs hooks: generate the API and configuration reference pages and complete the nav, at build time.

Named in ``mkdocs.yml`` under ``hooks``. The pages exist only in the build (nothing is written into ``docs/``):
``api/index.md``, one ``api/<module>.md`` per top-level package or module of ``brain_mtl`` and
``reference/configuration.md``. The nav entry ``API reference`` of ``mkdocs.yml`` is replaced by the generated pages,
and any Markdown page of ``docs/`` that the nav does not name (a page added by a later change, e.g. ``app.md``) is
appended under ``More``, so that it is built, link-checked and reachable.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.brain_mtl")

_HERE = Path(__file__).resolve().parent


def _load_generator() -> Any:
    name = "brain_mtl_docs_gen_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
gen.ensure_src_on_path()
_state: dict[str, Any] = {}


def _nav_pages(nav: Any) -> set[str]:
    pages: set[str] = set()
    if isinstance(nav, str):
        pages.add(nav)
    elif isinstance(nav, dict):
        for value in nav.values():
            pages |= _nav_pages(value)
    elif isinstance(nav, list):
        for item in nav:
            pages |= _nav_pages(item)
    return pages


def _title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip().strip("`")
    return path.stem.replace("_", " ").capitalize()


def on_config(config: Any) -> Any:
    """Plan the API pages and put them, and every page the nav misses, into the nav."""
    plan = gen.plan_api()
    _state["plan"] = plan
    nav = config.get("nav")
    if not nav:
        return config
    for index, item in enumerate(nav):
        if isinstance(item, dict) and "API reference" in item:
            nav[index] = {"API reference": gen.api_nav(plan)}
    named = _nav_pages(nav)
    docs_dir = Path(config["docs_dir"])
    extra = []
    for path in sorted(docs_dir.glob("*.md")):
        if path.name not in named:
            extra.append({_title(path): path.name})
    if extra:
        log.info("pages not named in mkdocs.yml's nav, listed under 'More': %s", [p for e in extra for p in e.values()])
        nav.append({"More": extra})
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the build."""
    plan = _state.get("plan") or gen.plan_api()
    pages = gen.api_pages(plan)
    pages[gen.CONFIG_PAGE] = gen.render_config_reference(plan=plan)
    for path, content in pages.items():
        if files.get_file_from_path(path) is not None:
            files.remove(files.get_file_from_path(path))
        files.append(File.generated(config, path, content=content))
    counts = plan.counts()
    log.info(
        "API reference: %d of %d names of __all__ lists covered, %d of %d public names of modules without __all__",
        counts["all_covered"],
        counts["all_exported"],
        counts["implicit_covered"],
        counts["implicit_public"],
    )
    return files
