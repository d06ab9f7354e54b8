"""The package's layers, read from docs/architecture.md and checked against every import of the source.

An AST walk over ``src/brain_mtl``: module-level imports and imports inside functions both count (only
``TYPE_CHECKING`` blocks are left out, which never run). The checks: every part sits in one documented layer and
imports only from lower layers or from itself; no import cycle between parts or between modules; no brain_mtl
import inside a function but the command line's deferred Lightning subcommands; at most five loose top-level
modules; no use of Lightning's private API; and ``brain_mtl.models`` and ``brain_mtl.evaluation`` load without
Lightning.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "brain_mtl"
DOC = REPO / "docs" / "architecture.md"

DEFERRED_IMPORTS = {("brain_mtl.commands.main", "_run_lightning")}
"""(module, function) where brain_mtl imports may wait until the function runs: the Lightning subcommands."""

MAX_LOOSE_MODULES = 5
"""Top-level modules beside the subpackages, ``__init__`` and ``__main__`` not counted."""


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported brain_mtl module
    line: int
    function: str | None  # the enclosing function, None at module level


def _module_names() -> dict[str, Path]:
    names = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _resolve(name: str) -> str | None:
    """The brain_mtl module an imported dotted name lives in (``brain_mtl.models.UNet`` -> ``brain_mtl.models``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return skipped


def _imports_of(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    enclosing: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if sub is not node:
                    enclosing.setdefault(id(sub), node.name)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.split(".")[0] == "brain_mtl" else None
            if target and target != module:
                found.append(Import(module, target, node.lineno, enclosing.get(id(node))))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports_of(module, path)]


def part_of(module: str) -> str:
    """``brain_mtl.data.index`` -> ``data``; the package root is ``brain_mtl``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def documented_layers() -> dict[str, int]:
    """Part -> layer number, from the numbered list between the ``layers`` markers of docs/architecture.md."""
    text = DOC.read_text()
    block = re.search(r"<!-- layers:.*?-->\n(.*?)<!-- /layers -->", text, re.S)
    assert block, "docs/architecture.md lost its <!-- layers --> list"
    layers = {}
    for line in block.group(1).splitlines():
        match = re.match(r"(\d+)\. (.*)", line.strip())
        assert match, f"not a layer line: {line!r}"
        for name in re.findall(r"`([A-Za-z_]+)`", match.group(2).split("(")[0]):
            layers[name] = int(match.group(1))
    return layers


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


# ---------------------------------------------------------------------------------------------------------------
def test_every_part_is_in_one_documented_layer():
    layers = documented_layers()
    parts = {part_of(module) for module in MODULES}
    assert sorted(parts - set(layers)) == [], "parts missing from docs/architecture.md's layer list"
    assert sorted(set(layers) - parts) == [], "docs/architecture.md lists parts that do not exist"


def test_parts_import_only_from_lower_layers():
    layers = documented_layers()
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target} (layer {layers[part_of(imp.target)]} >= "
        f"{layers[part_of(imp.source)]})"
        for imp in IMPORTS
        if part_of(imp.source) != part_of(imp.target) and layers[part_of(imp.target)] >= layers[part_of(imp.source)]
    ]
    assert wrong == []


def test_no_import_cycles_between_parts_or_modules():
    parts: dict[str, set[str]] = defaultdict(set)
    modules: dict[str, set[str]] = defaultdict(set)
    for imp in IMPORTS:
        if part_of(imp.source) != part_of(imp.target):
            parts[part_of(imp.source)].add(part_of(imp.target))
        if not imp.source.startswith(imp.target + "."):  # a module may import its own package's __init__
            modules[imp.source].add(imp.target)
    assert _cycles(parts) == []
    assert _cycles(modules) == []


def test_brain_mtl_imports_inside_functions_only_where_the_command_line_defers_a_subcommand():
    inner = [
        f"{imp.source}:{imp.line} ({imp.function}) imports {imp.target}"
        for imp in IMPORTS
        if imp.function is not None and (imp.source, imp.function) not in DEFERRED_IMPORTS
    ]
    assert inner == []
    assert any(imp.function for imp in IMPORTS), "the command line's deferred imports are gone: update the rule"


def test_few_loose_top_level_modules():
    loose = sorted(p.stem for p in SRC.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def _lightning_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lightning":
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _private_lightning_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lightning":
            uses += [f"imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            if any(piece.startswith("_") for piece in node.module.split(".")):
                uses.append(f"imports from {node.module}")
    bases = _lightning_names(tree)
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if not any(isinstance(b, ast.Name) and b.id in bases for b in cls.bases):
            continue
        own = {f.name for f in ast.walk(cls) if isinstance(f, ast.FunctionDef)}
        for node in ast.walk(cls):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    own.add(target.attr)
        for node in ast.walk(cls):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            on_super = isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "super"
            on_self = isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr not in own
            if on_super or on_self:
                uses.append(f"{cls.name} uses the inherited private {node.attr} (line {node.lineno})")
    return uses


def test_no_use_of_lightnings_private_api():
    uses = {str(p.relative_to(REPO)): u for p in SRC.rglob("*.py") if (u := _private_lightning_uses(p))}
    assert uses == {}


def test_the_checker_sees_a_private_lightning_use(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from lightning.fabric.utilities.cloud_io import _load\n"
        "from lightning.pytorch.callbacks import ModelCheckpoint\n"
        "class C(ModelCheckpoint):\n"
        "    def f(self, trainer):\n"
        "        super()._save_last_checkpoint(trainer, {})\n"
        "        return self._last_global_step_saved\n"
    )
    uses = _private_lightning_uses(bad)
    assert len(uses) == 3 and "imports lightning.fabric.utilities.cloud_io._load" in uses


@pytest.mark.parametrize("modules", ["brain_mtl.models, brain_mtl.evaluation", "brain_mtl.checkpoints, brain_mtl.data"])
def test_the_network_and_the_report_load_without_lightning(modules):
    code = f"import sys, {modules}; assert 'lightning' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-1500:]


def test_a_moved_module_keeps_its_old_name_with_a_warning():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import brain_mtl.module\nexcept DeprecationWarning as w:\n    print(w)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "brain_mtl.module moved to brain_mtl.task.module" in done.stdout, done.stderr[-1500:]
    code = "\n".join(
        [
            "import warnings; warnings.simplefilter('ignore')",
            "from brain_mtl.module import BrainTumorModule as Old",
            "from brain_mtl.task import BrainTumorModule",
            "from brain_mtl.metrics import FalseMaskRate, hd95",
            "from brain_mtl.synthetic.writer import generate_synthetic_dataset",
            "from brain_mtl.jsonsafe import dumps",
            "assert Old is BrainTumorModule and dumps({'a': float('nan')}) == '{\"a\": null}'",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-1500:]
