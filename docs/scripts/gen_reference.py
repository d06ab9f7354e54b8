"""Generate the API reference and the configuration reference of the site from the code, at build time.

Used by ``docs/scripts/hooks.py`` (the MkDocs hook) and by ``tests/docs``. Nothing here names a module of the
package below the top level: the API pages come from walking ``src/brain_mtl`` and reading each module's
``__all__`` (or, for a module without one, the public classes, functions and constants it defines), and the
configuration reference from the signatures and docstrings of the task, the datamodule, the callbacks the shipped
configs use, the Trainer keys they set and each subcommand's ``--help``. A module moved or added by a later change
appears on its own.

Public names are found statically (``ast``), so a module whose optional dependencies are missing is still
documented (mkdocstrings also reads the source statically). Each object is documented once, in the shortest public
module that exports it (the top-level ``brain_mtl`` only when nothing else does); every other module that exports
it links there.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import io
import os
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = "brain_mtl"
API_DIR = "api"
CONFIG_PAGE = "reference/configuration.md"
LIGHTNING_DOCS = "https://lightning.ai/docs/pytorch/stable"


def ensure_src_on_path() -> None:
    """Import this checkout's package (not another installed copy)."""
    src = str(SRC)
    if src in sys.path:
        sys.path.remove(src)
    sys.path.insert(0, src)


# ---------------------------------------------------------------------------------------------- the public names
@dataclasses.dataclass
class ModuleInfo:
    """One module of the package, as read from its source."""

    name: str
    path: Path
    is_package: bool
    explicit_all: list[str] | None  # the literal ``__all__``, or None when the module has none
    defined: list[str]  # public names assigned, defined or classed at its top level
    imports: dict[str, tuple[str, str]]  # local name -> (module, name) for ``from X import name [as local]``
    summary: str  # first line of the module docstring

    @property
    def public(self) -> list[str]:
        """``__all__`` when the module has one, else the public names it defines itself."""
        return list(self.explicit_all) if self.explicit_all is not None else list(self.defined)

    @property
    def group(self) -> str:
        """The API page this module is documented on: the package itself or its top-level sub-module/package."""
        parts = self.name.split(".")
        return ".".join(parts[:2])


def _module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_statements(body: list[ast.stmt], in_type_checking: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    """Top-level statements, looking into ``if``/``try`` blocks (and marking those under ``TYPE_CHECKING``)."""
    for node in body:
        if isinstance(node, ast.If):
            inner = in_type_checking or _is_type_checking(node.test)
            yield from _top_statements(node.body, inner)
            yield from _top_statements(node.orelse, in_type_checking)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _top_statements(block, in_type_checking)
        else:
            yield node, in_type_checking


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _is_public_constant(name: str) -> bool:
    # Constants (UPPER_CASE) and type aliases (CamelCase); lower-case assignments (loggers, helpers) are not API.
    return not name.startswith("_") and name[0].isupper()


def _literal_all(value: ast.expr, module: str) -> list[str]:
    """An ``__all__`` written as a literal list; one computed at import time is read from the imported module."""
    try:
        return list(ast.literal_eval(value))
    except ValueError:
        ensure_src_on_path()
        return list(importlib.import_module(module).__all__)


def read_module(path: Path, src: Path = SRC) -> ModuleInfo:
    """Read one module's public names, imports and summary from its source."""
    name = _module_name(path, src)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    explicit_all: list[str] | None = None
    defined: list[str] = []
    imports: dict[str, tuple[str, str]] = {}
    for node, type_checking in _top_statements(tree.body):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_relative(name, is_package, node.level, node.module)
            for alias in node.names:
                imports[alias.asname or alias.name] = (source, alias.name)
            continue
        if type_checking:
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not node.name.startswith("_"):
                defined.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id == "__all__" and node.value is not None:
                    explicit_all = _literal_all(node.value, name)
                elif isinstance(target, ast.Name) and _is_public_constant(target.id) and target.id not in defined:
                    defined.append(target.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "__all__":
            explicit_all = (explicit_all or []) + _literal_all(node.value, name)
        elif hasattr(ast, "TypeAlias") and isinstance(node, ast.TypeAlias):  # Python 3.12 ``type X = ...``
            if _is_public_constant(node.name.id):
                defined.append(node.name.id)
    docstring = ast.get_docstring(tree) or ""
    summary = docstring.strip().splitlines()[0] if docstring.strip() else ""
    return ModuleInfo(name, path, is_package, explicit_all, defined, imports, summary)


def discover(src: Path = SRC, package: str = PACKAGE) -> dict[str, ModuleInfo]:
    """Every public module of the package (``__main__`` and ``_private`` modules left out), by name."""
    modules: dict[str, ModuleInfo] = {}
    for path in sorted((src / package).rglob("*.py")):
        rel = path.relative_to(src / package)
        if any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        if any(part in ("tests", "__pycache__") for part in rel.parts):
            continue
        if path.name != "__init__.py" and not (path.parent / "__init__.py").exists():
            continue
        info = read_module(path, src)
        modules[info.name] = info
    return dict(sorted(modules.items(), key=lambda item: _sort_key(item[0])))


def _sort_key(name: str) -> tuple[int, str]:
    # Shallow modules first: a package before its sub-modules.
    return (name.count("."), name)


def origin(modules: dict[str, ModuleInfo], module: str, name: str, _seen: frozenset = frozenset()) -> tuple[str, str]:
    """Where ``module.name`` is defined: follows ``from X import name`` through the package's modules."""
    key = (module, name)
    info = modules.get(module)
    if info is None or key in _seen:
        return key
    if name in info.defined or (name.startswith("__") and name.endswith("__")):
        return key
    if name in info.imports:
        source, original = info.imports[name]
        if source in modules:
            return origin(modules, source, original, _seen | {key})
        # ``from brain_mtl.x import y`` where brain_mtl.x.y is a sub-module, or an outside package.
        if f"{source}.{original}" in modules:
            return (f"{source}.{original}", "")
        return (source, original)
    return key


@dataclasses.dataclass
class ApiPlan:
    """Which module documents each public name, and which only link to it."""

    modules: dict[str, ModuleInfo]
    canonical: dict[tuple[str, str], str]  # (module, name) -> "documenting.module.name" (the autoref identifier)
    documented_here: dict[str, list[str]]  # module -> names rendered in full under it

    @property
    def root(self) -> str:
        """The top-level package."""
        return min(self.modules, key=_sort_key)

    def pages(self) -> dict[str, list[str]]:
        """API page (``api/<group>.md``) -> the modules on it, the group's own module first."""
        pages: dict[str, list[str]] = {}
        for name, info in self.modules.items():
            pages.setdefault(info.group, []).append(name)
        top = self.root
        root = [top] if top in pages else []
        packages = sorted(g for g in pages if g != top and self.modules[g].is_package)
        plain = sorted(g for g in pages if g != top and not self.modules[g].is_package)
        return {f"{API_DIR}/{g}.md": pages[g] for g in [*root, *packages, *plain]}

    def counts(self) -> dict[str, int]:
        """Public names: in ``__all__`` lists, and defined by modules without ``__all__``; documented ones."""
        explicit = [(m, n) for m, i in self.modules.items() if i.explicit_all is not None for n in i.explicit_all]
        implicit = [(m, n) for m, i in self.modules.items() if i.explicit_all is None for n in i.defined]
        return {
            "all_exported": len(explicit),
            "all_covered": sum(key in self.canonical for key in explicit),
            "implicit_public": len(implicit),
            "implicit_covered": sum(key in self.canonical for key in implicit),
            "objects_documented": sum(len(v) for v in self.documented_here.values()),
        }


def plan_api(modules: dict[str, ModuleInfo] | None = None) -> ApiPlan:
    """Choose, for every public name, the one module whose page documents it in full."""
    modules = discover() if modules is None else modules
    exporters: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for module, info in modules.items():
        for name in info.public:
            exporters.setdefault(origin(modules, module, name), []).append((module, name))
    canonical: dict[tuple[str, str], str] = {}
    documented_here: dict[str, list[str]] = {m: [] for m in modules}
    for (defined_in, _), entries in exporters.items():
        # The shortest public path documents it, and among equally short ones the package it is defined in; the
        # top-level package only when nothing else exports it (its page is the front door, linking to the
        # documentation of each of its names).
        candidates = [e for e in entries if "." in e[0]] or entries

        def rank(entry: tuple[str, str], defined_in: str = defined_in) -> tuple:
            module = entry[0]
            outside = not (defined_in == module or defined_in.startswith(module + "."))
            return (module.count("."), outside, module, entry[1])

        home_module, home_name = min(candidates, key=rank)
        documented_here[home_module].append(home_name)
        for module, name in entries:
            canonical[(module, name)] = f"{home_module}.{home_name}"
    for module, info in modules.items():
        order = {n: i for i, n in enumerate(info.public)}
        documented_here[module].sort(key=lambda n: order.get(n, len(order)))
    return ApiPlan(modules, canonical, documented_here)


def _options_block(members: list[str] | bool, heading_level: int = 2) -> str:
    members_yaml = "false" if members is False else "[" + ", ".join(members) + "]"
    return (
        "    options:\n"
        f"      members: {members_yaml}\n"
        f"      heading_level: {heading_level}\n"
        "      show_root_heading: true\n"
        "      show_root_full_path: true\n"
    )


def render_api_page(plan: ApiPlan, page: str, module_names: list[str]) -> str:
    """The Markdown of one API page: each module with its own names in full and links for the re-exported ones."""
    group = module_names[0]
    info = plan.modules[group]
    kind = "package" if info.is_package else "module"
    out = [f"# `{group}`\n", f"*The {kind} `{group}`: generated from the code's docstrings at build time.*\n"]
    for module in module_names:
        minfo = plan.modules[module]
        here = plan.documented_here[module]
        out.append(f"::: {module}\n{_options_block(here or False)}")
        linked = [n for n in minfo.public if plan.canonical[(module, n)] != f"{module}.{n}"]
        if linked:
            links = ", ".join(f"[`{n}`][{plan.canonical[(module, n)]}]" for n in linked)
            out.append(f"Also exported by `{module}`, documented where they are defined: {links}.\n")
    return "\n".join(out)


def render_api_index(plan: ApiPlan) -> str:
    """The API overview: one row per module, with its summary and its public names."""
    counts = plan.counts()
    lines = [
        "# API reference\n",
        "Generated at build time from the code: every module of `brain_mtl`, with each name in its `__all__` (or, "
        "for a module without `__all__`, each public class, function and constant it defines). Each object is "
        "documented once, in the shortest module that exports it; the other modules that export it link there.\n",
        f"**{counts['all_covered']} of {counts['all_exported']}** names exported by `__all__` lists are covered, "
        f"and **{counts['implicit_covered']} of {counts['implicit_public']}** public names of modules without "
        f"`__all__`; {counts['objects_documented']} objects are documented in full.\n",
        "| module | public names | what it is |",
        "|---|---|---|",
    ]
    for page, module_names in plan.pages().items():
        target = page.removeprefix(f"{API_DIR}/")
        for module in module_names:
            info = plan.modules[module]
            source = "`__all__`" if info.explicit_all is not None else "defined"
            anchor = f"#{module}" if module != module_names[0] else ""
            lines.append(f"| [`{module}`]({target}{anchor}) | {len(info.public)} ({source}) | {_cell(info.summary)} |")
    return "\n".join(lines) + "\n"


def api_pages(plan: ApiPlan | None = None) -> dict[str, str]:
    """Every generated API page: path under ``docs/`` -> Markdown."""
    plan = plan_api() if plan is None else plan
    pages = {f"{API_DIR}/index.md": render_api_index(plan)}
    for page, module_names in plan.pages().items():
        pages[page] = render_api_page(plan, page, module_names)
    return pages


def api_nav(plan: ApiPlan | None = None) -> list[Any]:
    """The nav entries of the API reference."""
    plan = plan_api() if plan is None else plan
    nav: list[Any] = [{"Overview": f"{API_DIR}/index.md"}]
    for page, module_names in plan.pages().items():
        nav.append({module_names[0]: page})
    return nav


# ------------------------------------------------------------------------------------- the configuration reference
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const|ref):`(~?)([^`<]+?)(?:\s*<[^>]*>)?`")


def plain_roles(text: str) -> str:
    """Docstrings' Sphinx roles as code spans: ``:class:`~a.b.C``` -> ```C```, ``:mod:`a.b``` -> ```a.b```."""

    def code(match: re.Match) -> str:
        target = match.group(2).strip()
        return f"`{target.rpartition('.')[2] if match.group(1) else target}`"

    return _ROLE.sub(code, text)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, pipes outside code spans escaped (inside, they are kept)."""
    text = plain_roles(" ".join(str(text).split()))
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(text[last : match.start()].replace("|", "\\|"))
        out.append(match.group(0))
        last = match.end()
    out.append(text[last:].replace("|", "\\|"))
    return "".join(out)


def _docstring_params(*objects: Any) -> dict[str, str]:
    import docstring_parser

    params: dict[str, str] = {}
    for obj in objects:
        # The object's own docstring: inspect.getdoc would fall back to a parent's, which documents other arguments.
        doc = inspect.cleandoc(obj.__doc__) if obj is not None and obj.__doc__ else ""
        try:
            parsed = docstring_parser.parse(doc, docstring_parser.DocstringStyle.GOOGLE).params if doc else []
        except docstring_parser.ParseError:
            parsed = []
        for param in parsed:
            params.setdefault(param.arg_name, param.description or "")
    return params


def format_type(annotation: Any) -> str:
    """A readable type: ``int``, ``str | None``, ``'bce' | 'dice_bce'``."""
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    origin_ = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin_ is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin_ in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join("None" if a is type(None) else format_type(a) for a in args)
    if origin_ is not None and args:
        name = getattr(origin_, "__name__", str(origin_))
        return f"{name}[{', '.join(format_type(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _format_default(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, str) or not value else value


def signature_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """``(key, type, default, description)`` for each argument of ``cls.__init__`` (docstrings of both)."""
    init = cls.__init__
    signature = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that only resolves under TYPE_CHECKING: show it as written
        hints = {}
    docs = _docstring_params(cls, init if init is not object.__init__ else None)
    rows = []
    for name, param in signature.parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, param.annotation)
        rows.append((name, format_type(annotation), _format_default(param.default), docs.get(name, "")))
    return rows


def _table(rows: list[tuple[str, str, str, str]], group: str) -> str:
    lines = [f"| `{group}` key | type | default | meaning |", "|---|---|---|---|"]
    for key, type_, default, doc in rows:
        type_cell = f"`{' '.join(type_.split())}`" if type_ else ""
        lines.append(f"| `{key}` | {type_cell} | `{_cell(default)}` | {_cell(doc)} |")
    return "\n".join(lines) + "\n"


def read_configs(config_dir: Path | None = None) -> dict[str, dict]:
    """The shipped YAML configs, by file name."""
    import yaml

    config_dir = REPO / "configs" if config_dir is None else config_dir
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) or {} for p in sorted(config_dir.glob("*.yaml"))}


def _import_path(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _value(value: Any) -> str:
    if isinstance(value, dict) and "class_path" in value:
        return value["class_path"].rpartition(".")[2]
    if isinstance(value, list) and value and all(isinstance(v, dict) and "class_path" in v for v in value):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _lightning_api_url(class_path: str) -> str:
    public = class_path
    for package in ("callbacks", "loggers", "strategies", "plugins", "profilers"):
        marker = f"lightning.pytorch.{package}."
        if class_path.startswith(marker):
            public = marker + class_path.rpartition(".")[2]
    return f"{LIGHTNING_DOCS}/api/{public}.html"


MISSING_DEPENDENCY = "could not be imported while the site was built"


def help_text(argv: list[str]) -> str:
    """What ``python -m brain_mtl ARGV`` prints, run in this process (``--help`` exits through SystemExit)."""
    from brain_mtl.commands.main import main

    out = io.StringIO()
    previous = os.environ.get("COLUMNS"), sys.argv
    os.environ["COLUMNS"] = "200"  # one line per option where it fits: easier to read back
    sys.argv = ["brain_mtl"]  # not the builder's arguments (LightningCLI compares them with the args it is given)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), contextlib.suppress(SystemExit):
            main(argv)
    except ImportError as error:  # a command whose optional dependency this build lacks (e.g. a web app's)
        return f"{MISSING_DEPENDENCY}: {error}"
    finally:
        sys.argv = previous[1]
        if previous[0] is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous[0]
    return out.getvalue()


def subcommands() -> list[tuple[str, str]]:
    """``(name, one-line help)`` of every subcommand, read from ``python -m brain_mtl --help``."""
    text = help_text(["--help"])
    found = re.findall(r"^\s+python -m brain_mtl\s+(\S+)\s+(.*)$", text, flags=re.MULTILINE)
    if not found:
        raise RuntimeError(
            "docs/scripts/gen_reference.py: no subcommand found in `python -m brain_mtl --help` (expected lines "
            f"'  python -m brain_mtl NAME  what it does'); update subcommands() to its new shape. It printed:\n{text}"
        )
    return [(name, text.strip()) for name, text in found]


_OPTION = re.compile(r"^ {2}(-\S.*?)(?: {2,}(\S.*))?$")


def parse_help(text: str) -> list[tuple[str, str]]:
    """``(flags, help)`` of each option of an argparse or jsonargparse ``--help`` text."""
    options: list[list[str]] = []
    for line in text.splitlines():
        match = _OPTION.match(line)
        if match:
            options.append([match.group(1).strip(), (match.group(2) or "").strip()])
        elif options and line.startswith(" " * 4) and line.strip():
            options[-1][1] = (options[-1][1] + " " + line.strip()).strip()
        elif line.strip() == "" or not line.startswith(" "):
            if options and options[-1][0] != "":
                options.append(["", ""])  # a section break: later indented text is not this option's help
    # jsonargparse lists every known subclass of a class-typed option: the type says enough.
    return [(flags, re.sub(r",? known subclasses: [^)]*", "", doc)) for flags, doc in options if flags]


_GROUPS_ELSEWHERE = re.compile(r"--(trainer|model|data|optimizer|lr_scheduler)[.+]|\.help\b|^-h\b")


def _subcommand_section(name: str, summary: str, lightning: bool) -> str:
    text = help_text([name, "--help"])
    if text.startswith(MISSING_DEPENDENCY):
        return f"### `{name}`\n\n{summary}. Its options {text}.\n"
    options = parse_help(text)
    lines = [f"### `{name}`\n", f"{summary[:1].upper()}{summary[1:]}.\n" if summary else ""]
    if lightning:
        options = [(f, d) for f, d in options if not _GROUPS_ELSEWHERE.search(f)]
        lines.append(
            "LightningCLI subcommand: the `trainer`, `model` and `data` groups above (plus `optimizer` and "
            "`lr_scheduler`), and these options of its own:\n"
        )
    if not options:
        lines.append(f"`python -m brain_mtl {name} --help` printed no options here:\n\n```text\n{text.strip()}\n```\n")
        return "\n".join(lines)
    lines += ["| option | meaning |", "|---|---|"]
    lines += [f"| `{_cell(flags)}` | {_cell(doc)} |" for flags, doc in options]
    if not lightning:
        lines.append(
            f'\n??? note "`python -m brain_mtl {name} --help`"\n\n    ```text\n'
            + "\n".join(f"    {line}".rstrip() for line in text.strip().splitlines())
            + "\n    ```\n"
        )
    return "\n".join(lines) + "\n"


def _callback_classes(configs: dict[str, dict]) -> dict[str, list[str]]:
    """Callback class paths: those the configs use (-> which configs), then the package's own callbacks."""
    used: dict[str, list[str]] = {}
    for file, config in configs.items():
        for callback in (config.get("trainer") or {}).get("callbacks") or []:
            if isinstance(callback, dict) and "class_path" in callback:
                used.setdefault(callback["class_path"], []).append(file)
    with contextlib.suppress(ImportError):
        from lightning.pytorch.callbacks import Callback

        callbacks = importlib.import_module(f"{PACKAGE}.callbacks")
        for name in getattr(callbacks, "__all__", []):
            obj = getattr(callbacks, name, None)
            known = {_import_path(p) for p in used if p.startswith(PACKAGE)}
            if isinstance(obj, type) and issubclass(obj, Callback) and obj not in known:
                used.setdefault(f"{PACKAGE}.callbacks.{name}", [])
    return used


def api_ref(plan: ApiPlan, dotted: str) -> str:
    """The autoref identifier of a public ``module.name`` (where the API reference documents it), or ``""``."""
    module, _, name = dotted.rpartition(".")
    return plan.canonical.get((module, name), "")


def _linked(plan: ApiPlan, dotted: str) -> str:
    ref = api_ref(plan, dotted)
    return f"[`{dotted}`][{ref}]" if ref else f"`{dotted}`"


def render_config_reference(config_dir: Path | None = None, plan: ApiPlan | None = None) -> str:
    """The configuration reference, from the code's signatures, docstrings and parsers.

    Every key of ``model`` and ``data``, the callbacks, the Trainer keys the configs set, and each subcommand's
    options.
    """
    ensure_src_on_path()
    import brain_mtl

    plan = plan_api() if plan is None else plan
    configs = read_configs(config_dir)
    out = [
        "# Configuration reference\n",
        "*Generated at build time from the code (signatures, docstrings, the shipped configs and each subcommand's "
        "parser), so it cannot drift from it. How to write and combine configs: [Configuration](../configuration.md); "
        "a run's resolved values: `python -m brain_mtl fit --config C --print_config`.*\n",
        "A config has four groups, `seed_everything`, `trainer`, `model` and `data` (plus the optional `optimizer` "
        "and `lr_scheduler`); each key below can also be given on the command line, e.g. `--model.lr 3e-4`.\n",
        "## `model`: `BrainTumorModule`\n",
        f"The arguments of {_linked(plan, 'brain_mtl.BrainTumorModule')} "
        "(see also [Subclassing](../subclassing.md)).\n",
        _table(signature_rows(brain_mtl.BrainTumorModule), "model"),
        "## `data`: `BrainTumorDataModule`\n",
        f"The arguments of {_linked(plan, 'brain_mtl.BrainTumorDataModule')} (see also [Data](../data.md)).\n",
        _table(signature_rows(brain_mtl.BrainTumorDataModule), "data"),
    ]
    out += _trainer_section(configs)
    out += _callbacks_section(configs, plan)
    out.append("## Subcommands\n")
    out.append("Read from each subcommand's own parser (`python -m brain_mtl NAME --help`) while the site is built.\n")
    names = subcommands()
    lightning = [(n, s) for n, s in names if n in ("fit", "validate", "test", "predict")]
    tools = [(n, s) for n, s in names if n not in dict(lightning)]
    for name, summary in lightning + tools:
        out.append(_subcommand_section(name, summary, name in dict(lightning)))
    return "\n".join(out)


def _trainer_section(configs: dict[str, dict]) -> list[str]:
    import docstring_parser
    from lightning.pytorch import Trainer

    docs = {
        p.arg_name: p.description or ""
        for p in docstring_parser.parse(
            inspect.getdoc(Trainer.__init__) or "", docstring_parser.DocstringStyle.GOOGLE
        ).params
    }
    keys: dict[str, dict[str, Any]] = {}
    for file, config in configs.items():
        for key, value in (config.get("trainer") or {}).items():
            keys.setdefault(key, {})[file] = value
    files = list(configs)
    lines = [
        "## `trainer`: the keys the shipped configs set\n",
        "Every other key of Lightning's `Trainer` works too: see "
        f"[Lightning's Trainer reference]({LIGHTNING_DOCS}/common/trainer.html) or "
        "`python -m brain_mtl fit --help`.\n",
        "| key | " + " | ".join(f"`{f.removesuffix('.yaml')}`" for f in files) + " | Lightning's description |",
        "|---|" + "---|" * len(files) + "---|",
    ]
    for key, values in keys.items():
        cells = " | ".join(_cell(_value(values[f])) if f in values else "" for f in files)
        doc = docs.get(key, "")
        lines.append(f"| `trainer.{key}` | {cells} | {_cell(doc.split('Default:')[0])} |")
    return ["\n".join(lines) + "\n"]


def _callbacks_section(configs: dict[str, dict], plan: ApiPlan) -> list[str]:
    out = [
        "## Callbacks\n",
        "Callbacks go in `trainer.callbacks` as `class_path` and `init_args`. These are the ones the shipped configs "
        "use and the package's own.\n",
    ]
    for class_path, files in _callback_classes(configs).items():
        name = class_path.rpartition(".")[2]
        used = ", ".join(f"`{f}`" for f in files) if files else "no shipped config (add it yourself)"
        out.append(f"### `{name}`\n")
        if class_path.startswith(PACKAGE):
            try:
                cls = _import_path(class_path)
            except (ImportError, AttributeError) as error:
                out.append(f"`{class_path}` could not be imported while the site was built: {error}.\n")
                continue
            out.append(f"`class_path:` {_linked(plan, class_path)}; used by {used}.\n")
            out.append(_table(signature_rows(cls), "init_args"))
        else:
            out.append(
                f"`class_path: {class_path}`, Lightning's: see [its documentation]({_lightning_api_url(class_path)}); "
                f"used by {used}.\n"
            )
    return out
