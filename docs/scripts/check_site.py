"""Check a built site: every name of every ``__all__`` is documented, and no page loads anything from the network.

Run after ``mkdocs build --strict --site-dir SITE`` (``.ci/run`` does): ``python docs/scripts/check_site.py SITE``.
Exit status 1, with the missing names or the external assets listed, when a check fails.

The names are read from the imported package (each module's ``__all__`` at run time, independently of the
generator, which reads the source), and each must appear in the built HTML as the anchor of its documentation or
as a link to it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import re
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _generator():
    name = "brain_mtl_docs_gen_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _HERE / "gen_reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def runtime_exports(package: str = "brain_mtl") -> tuple[dict[str, list[str]], dict[str, str]]:
    """``__all__`` of every importable module of the package, and the modules that could not be imported (why)."""
    _generator().ensure_src_on_path()
    root = importlib.import_module(package)
    exports: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=lambda _: None)]
    for name in names:
        if name.rpartition(".")[2].startswith("_"):  # __main__ (runs the CLI) and private modules
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as error:  # an optional dependency (e.g. of a web app) that this build lacks
            skipped[name] = str(error)
            continue
        if hasattr(module, "__all__"):
            exports[name] = list(module.__all__)
    return exports, skipped


_EXTERNAL_ASSET = re.compile(
    r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']?(?:https?:)?//"""
    r"""|<link\b[^>]*\bhref=["']?(?:https?:)?//[^>]*>"""
    r"""|@import\s+url\(\s*["']?(?:https?:)?//"""
    r"""|fonts\.googleapis\.com|fonts\.gstatic\.com""",
    re.IGNORECASE,
)


def external_assets(site: Path) -> list[str]:
    """Files of the site that load a script, style, font or image from another host."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".css", ".js") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for match in _EXTERNAL_ASSET.finditer(text):
                snippet = match.group(0)
                if 'rel="canonical"' in snippet or "rel=canonical" in snippet:
                    continue
                found.append(f"{path.relative_to(site)}: {snippet[:120]}")
    return found


def api_coverage(site: Path) -> tuple[int, int, list[str]]:
    """``(documented, exported, missing)`` over every (module, name) of the package's ``__all__`` lists."""
    gen = _generator()
    plan = gen.plan_api()
    exports, _ = runtime_exports(plan.root)
    html: dict[str, str] = {}
    missing = []
    total = 0
    for module, names in exports.items():
        for name in names:
            total += 1
            target = plan.canonical.get((module, name))
            if target is None:
                missing.append(f"{module}.{name}: not in the generated API reference")
                continue
            page = plan.modules[target.rpartition(".")[0]].group
            if page not in html:
                path = site / gen.API_DIR / f"{page}.html"
                html[page] = path.read_text(encoding="utf-8") if path.exists() else ""
            if f'id="{target}"' not in html[page]:
                missing.append(f"{module}.{name}: no anchor {target} in {gen.API_DIR}/{page}.html")
    return total - len(missing), total, missing


def main(argv: list[str] | None = None) -> int:
    """Check the site folder given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="folder of the built site (mkdocs build --site-dir)")
    args = parser.parse_args(argv)
    documented, exported, missing = api_coverage(args.site)
    print(f"API reference: {documented} of {exported} names exported by __all__ lists are documented")
    _, skipped = runtime_exports()
    for name, why in skipped.items():
        print(f"  not importable here, documented from its source only: {name} ({why})")
    for line in missing:
        print(f"  missing: {line}")
    external = external_assets(args.site)
    print(f"external assets (scripts, styles, fonts, images from other hosts): {len(external)}")
    for line in external[:20]:
        print(f"  {line}")
    return 1 if missing or external else 0


if __name__ == "__main__":
    sys.exit(main())
