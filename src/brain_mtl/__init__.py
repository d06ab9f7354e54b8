"""brain_mtl: one U-Net that segments a brain tumour and classifies the MRI slice, in PyTorch Lightning.

The public names below are imported on first use, so that ``import brain_mtl`` stays cheap and the plain
network (:class:`brain_mtl.models.UNet`) can be used without Lightning's start-up cost.

Modules that moved (``brain_mtl.module`` is now ``brain_mtl.task.module``, ...; the table :data:`MOVED_MODULES`)
stay importable under their old names for one release, with a ``DeprecationWarning`` naming the new home. An old
name gives the new module's own objects, so classes, ``isinstance`` checks and configs that name the old path
(``class_path: brain_mtl.module.BrainTumorModule``) keep working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any

# albumentations checks PyPI for a newer release on import; training must not touch the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

_PUBLIC = {
    "UNet": "brain_mtl.models",
    "UNetOutput": "brain_mtl.models",
    "BrainTumorModule": "brain_mtl.task",
    "BrainTumorDataModule": "brain_mtl.data",
    "Predictor": "brain_mtl.inference",
    "CLASS_NAMES": "brain_mtl.classes",
}
__all__ = [
    "CLASS_NAMES",
    "MOVED_MODULES",
    "BrainTumorDataModule",
    "BrainTumorModule",
    "Predictor",
    "UNet",
    "UNetOutput",
    "__version__",
]

MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "brain_mtl.cli": ("brain_mtl.commands.main",),
    "brain_mtl.lightning_cli": ("brain_mtl.commands.lightning",),
    "brain_mtl.allocator": ("brain_mtl.commands.allocator",),
    "brain_mtl.module": ("brain_mtl.task.module",),
    "brain_mtl.losses": ("brain_mtl.task.losses",),
    "brain_mtl.optim": ("brain_mtl.task.optim",),
    "brain_mtl.rng": ("brain_mtl.task.rng",),
    "brain_mtl.stage_metrics": ("brain_mtl.task.stage_metrics",),
    "brain_mtl.callbacks.finetuning": ("brain_mtl.task.finetuning",),
    "brain_mtl.postprocess": ("brain_mtl.models.postprocess",),
    "brain_mtl.inference.tta": ("brain_mtl.models.tta",),
    "brain_mtl.synthetic": ("brain_mtl.data.synthetic",),
    "brain_mtl.synthetic.anatomy": ("brain_mtl.data.synthetic.anatomy",),
    "brain_mtl.synthetic.phantom": ("brain_mtl.data.synthetic.phantom",),
    "brain_mtl.synthetic.writer": ("brain_mtl.data.synthetic.writer",),
    "brain_mtl.jsonsafe": ("brain_mtl.files",),
    # Split in two: the torchmetrics objects the task logs, and the report's per-image figures.
    "brain_mtl.metrics": ("brain_mtl.task.metrics", "brain_mtl.evaluation.metrics"),
}
"""Old module name -> its new home(s); deprecated, removed in the release after next (``docs/changelog.md``)."""

_RENAMED = {("brain_mtl.jsonsafe", "dumps"): "json_dumps"}
"""Names that changed with the move: (old module, old name) -> name in the new home."""


def _warn_moved(old: str, new: str) -> None:
    # Attributed to the user's import line, past this file and the import machinery, so that Python's default
    # filters show it where the old name is written.
    frame, level = sys._getframe(0), 1
    while frame is not None and (
        frame.f_code.co_filename == __file__
        or "importlib" in frame.f_code.co_filename
        or frame.f_code.co_name == "__getattr__"  # a package's moved names (moved_attribute)
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{old} moved to {new}; the old name goes in the release after next", DeprecationWarning, level)


class _MovedModuleLoader(importlib.abc.Loader):
    """Resolves an old module name to a view whose attributes are the new home's (its parts', for a split one)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = MOVED_MODULES[spec.name]
        _warn_moved(spec.name, " and ".join(targets))
        view = types.ModuleType(spec.name, f"Deprecated: moved to {' and '.join(targets)}.")

        def __getattr__(name: str) -> Any:
            for target in targets:
                module = importlib.import_module(target)
                new_name = _RENAMED.get((spec.name, name), name)
                if hasattr(module, new_name):
                    return getattr(module, new_name)
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}")

        view.__getattr__ = __getattr__  # type: ignore[method-assign]
        if any(other.startswith(spec.name + ".") for other in MOVED_MODULES):
            view.__path__ = []  # a package: its moved submodules import through it
        return view

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the view was created whole."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of :data:`MOVED_MODULES` (only those: every other import is Python's)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader())


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())


def moved_attribute(module: str, name: str, moved: dict[str, str]) -> Any:
    """A package's ``__getattr__`` for names that moved out of it (``moved``: name -> ``"module:name"``).

    Raises:
        AttributeError: ``name`` did not move (the usual error).
    """
    if name not in moved:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    target, _, new_name = moved[name].partition(":")
    _warn_moved(f"{module}.{name}", f"{target}.{new_name}")
    return getattr(importlib.import_module(target), new_name)


if TYPE_CHECKING:
    from brain_mtl.classes import CLASS_NAMES
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.inference import Predictor
    from brain_mtl.models import UNet, UNetOutput
    from brain_mtl.task import BrainTumorModule


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'brain_mtl' has no attribute {name!r}")
