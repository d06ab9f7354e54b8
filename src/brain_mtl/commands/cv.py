"""``python -m brain_mtl cv``: k-fold cross-validation, one fold after another or one fold per machine.

``cv --config CFG --folds K [any fit argument]`` fits fold 0..K-1 in turn, each in
``<trainer.default_root_dir>/fold<k>/`` (``fit --data.num_folds K --data.fold k``); a finished fold is skipped and
an interrupted one resumes from its ``last.ckpt``. Each finished fold's best checkpoint is scored on its validation
fold with the evaluation report (``test --data.test_split val``), and the folds are summarised in
``<trainer.default_root_dir>/``: ``cv_summary.json``, ``cv_summary.md`` and ``ensemble.yaml`` (the members' best
checkpoints, relative paths). ``--summarize_only`` trains nothing: it scores the folds fitted elsewhere (one per
GPU, machine or SLURM array task, each a ``fit --data.num_folds K --data.fold k --trainer.default_root_dir
<root>/fold<k>``) and writes the summary.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from brain_mtl.commands.base import UsageError
from brain_mtl.commands.main import main as command_line
from brain_mtl.files import atomic_write_text, json_dumps

__all__ = ["FOLD_DONE", "cv", "cv_main", "fold_figures"]

FOLD_DONE = "fold_done.json"
"""Written in a fold's folder when its fit and its validation report are complete: the fold is then skipped."""

FIGURES = (
    "dice_pooled",
    "dice_per_image",
    "all_image_dice",
    "false_mask_rate",
    "accuracy",
    "macro_f1",
    "ece",
    "nll",
)
"""The validation figures of each fold, summarised as mean and standard deviation."""

USAGE = "usage: brain_mtl cv --config CFG --folds K [--summarize_only] [any fit argument, e.g. --trainer.max_epochs 5]"

OPTIONS = """options:
  --folds K          the number of folds (2 or more); fold k validates on the k-th of K stratified, grouped folds
  --summarize_only   fit nothing: score the folds fitted elsewhere and write the summary
  --config CFG       and every other argument: passed to each fold's fit (see brain_mtl fit --help)"""


def fold_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of a ``report.json`` that a comparison table shows.

    Tumour Dice pooled and per image, all-image Dice, false-mask rate, accuracy, macro F1, ECE, and the pooled Dice
    of each tumour class (``dice_glioma``, ...).
    """
    seg = report["ungated"]["tumour_segmentation"]
    out = {
        "dice_pooled": seg["overall"]["dice_pooled"],
        "dice_per_image": seg["overall"]["dice_per_image"]["mean"],
        "all_image_dice": report["ungated"]["all_images"]["dice_mean"],
        "false_mask_rate": report["ungated"]["false_masks"]["rate"],
        "accuracy": report["classification"]["accuracy"],
        "macro_f1": report["classification"]["macro_f1"],
        "ece": report["classification"]["ece"],
        "nll": report["classification"].get("nll", float("nan")),
    }
    out.update({f"dice_{name}": f["dice_pooled"] for name, f in seg["by_class"].items()})
    return out


def _split_args(argv: Sequence[str]) -> tuple[int | None, bool, list[str]]:
    """``(--folds, --summarize_only, the fit arguments)``."""
    folds, summarize_only, rest = None, False, []
    items = iter(argv)
    for arg in items:
        if arg == "--folds" or arg.startswith("--folds="):
            value = arg.split("=", 1)[1] if "=" in arg else next(items, "")
            if not value.isdigit() or int(value) < 2:
                raise UsageError(f"--folds must be a whole number of 2 or more, got {value!r}")
            folds = int(value)
        elif arg == "--summarize_only":
            summarize_only = True
        elif arg in ("--data.num_folds", "--data.fold") or arg.startswith(("--data.num_folds=", "--data.fold=")):
            raise UsageError(f"{arg.split('=')[0]} is set by cv for each fold: give --folds K instead")
        else:
            rest.append(arg)
    return folds, summarize_only, rest


def _root_dir(fit_args: Sequence[str]) -> Path:
    """``trainer.default_root_dir``: the last one given on the command line, else the last config's, else ``.``.

    Raises:
        UsageError: a config's checkpoint callback names its own ``dirpath``: every fold would write there.
    """
    root: str | None = None
    for a, b in itertools.pairwise([*fit_args, ""]):
        if a == "--config":
            trainer = (yaml.safe_load(Path(b).read_text()) or {}).get("trainer") or {}
            root = trainer.get("default_root_dir", root)
            for callback in trainer.get("callbacks") or []:
                if isinstance(callback, dict) and (callback.get("init_args") or {}).get("dirpath"):
                    raise UsageError(
                        f"{b}: {callback.get('class_path')} sets dirpath, so every fold would write its checkpoints "
                        "there; cv puts them in <trainer.default_root_dir>/fold<k>/checkpoints: remove dirpath"
                    )
    for a, b in itertools.pairwise([*fit_args, ""]):
        if a == "--trainer.default_root_dir":
            root = b
        elif a.startswith("--trainer.default_root_dir="):
            root = a.split("=", 1)[1]
    return Path(root or ".")


def _best_checkpoint(fold_dir: Path) -> Path | None:
    """The best file the fold's RunCheckpoint recorded in its last.ckpt, else its newest last*.ckpt."""
    lasts = sorted((fold_dir / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not lasts:
        return None
    state = torch.load(lasts[-1], map_location="cpu", weights_only=True)
    for key, value in (state.get("callbacks") or {}).items():
        best = value.get("best_model_path") if "Checkpoint" in key and isinstance(value, dict) else None
        if best and Path(best).is_file():
            return Path(best)
    return lasts[-1]


def _validation_paths(report_dir: Path) -> list[str]:
    with open(report_dir / "per_image.csv", newline="", encoding="utf-8") as handle:
        return sorted({row["path"] for row in csv.DictReader(handle)})


@contextlib.contextmanager
def _command_line(args: list[str]) -> Iterator[list[str]]:
    """``sys.argv`` set to one fold's command for the block: its own command line, not ``cv ...``.

    LightningCLI then reads the fold's arguments as the process's (no warning about two sets of arguments), and
    a strategy that starts processes (DDP) starts them on the fold's command.
    """
    saved = sys.argv
    sys.argv = [saved[0] if saved else "brain_mtl", *args]
    try:
        yield args
    finally:
        sys.argv = saved


def _run_fold(main: Callable[[list[str]], int], fit_args: list[str], folds: int, fold: int, fold_dir: Path) -> int:
    """Fit fold ``fold`` (resuming it), score its best checkpoint on its validation fold; write FOLD_DONE."""
    done = fold_dir / FOLD_DONE
    if done.is_file():
        print(f"cv: fold {fold} is finished ({done}): skipped", file=sys.stderr)
        return 0
    fold_args = [
        *fit_args,
        "--data.num_folds",
        str(folds),
        "--data.fold",
        str(fold),
        "--trainer.default_root_dir",
        str(fold_dir),
    ]
    resume = any((fold_dir / "checkpoints").glob("last*.ckpt"))
    print(f"cv: fold {fold} of {folds} in {fold_dir}{' (resumed from last.ckpt)' if resume else ''}", file=sys.stderr)
    with _command_line(["fit", *fold_args, *(["--ckpt_path", "last"] if resume else [])]) as command:
        status = main(command)
    if status:
        return status
    return _score_fold(main, fit_args, folds, fold, fold_dir)


def _score_fold(main: Callable[[list[str]], int], fit_args: list[str], folds: int, fold: int, fold_dir: Path) -> int:
    """Score a fitted fold's best checkpoint on its validation fold with the evaluation report; write FOLD_DONE."""
    done = fold_dir / FOLD_DONE
    best = _best_checkpoint(fold_dir)
    if best is None:
        print(f"error: cv: fold {fold} wrote no checkpoint in {fold_dir / 'checkpoints'}", file=sys.stderr)
        return 1
    report_dir = fold_dir / "validation_report"
    command = [
        "test",
        *fit_args,
        "--data.num_folds",
        str(folds),
        "--data.fold",
        str(fold),
        "--data.test_split",
        "val",
        "--ckpt_path",
        str(best),
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(report_dir),
    ]
    with _command_line(command):
        status = main(command)
    if status:
        return status
    report = json.loads((report_dir / "report.json").read_text())
    entry = {
        "fold": fold,
        "checkpoint": str(best),
        "figures": fold_figures(report),
        "validation": _validation_paths(report_dir),
    }
    atomic_write_text(done, json_dumps(entry, indent=2) + "\n")
    return 0


def summarize_folds(root: Path, folds: int) -> dict[str, Any]:
    """Collect the finished folds under ``root``; write cv_summary.json, cv_summary.md and ensemble.yaml there.

    Raises:
        UsageError: a fold is not finished (its ``fold_done.json`` is missing), naming the folds and the command.
    """
    missing = [k for k in range(folds) if not (root / f"fold{k}" / FOLD_DONE).is_file()]
    if missing:
        raise UsageError(
            f"cv: fold(s) {', '.join(map(str, missing))} of {folds} in {root} have no checkpoint: run "
            f"`python -m brain_mtl cv --folds {folds} ...` (it fits and resumes them), or fit each with "
            f"--data.num_folds {folds} --data.fold k --trainer.default_root_dir {root}/fold<k> first"
        )
    entries = [json.loads((root / f"fold{k}" / FOLD_DONE).read_text()) for k in range(folds)]
    summary: dict[str, Any] = {"folds": entries, "mean": {}, "sd": {}}
    keys = [k for k in entries[0]["figures"] if all(k in e["figures"] for e in entries)]
    for key in keys:
        values = [e["figures"][key] for e in entries if e["figures"][key] is not None]
        finite = [float(v) for v in values if math.isfinite(float(v))]
        mean = sum(finite) / len(finite) if finite else None
        sd = (
            math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
            if mean is not None and len(finite) > 1
            else None
        )
        summary["mean"][key], summary["sd"][key] = mean, sd
    atomic_write_text(root / "cv_summary.json", json_dumps(summary, indent=2) + "\n")
    atomic_write_text(root / "cv_summary.md", _markdown(summary, keys))
    members = [Path(e["checkpoint"]).resolve() for e in entries]
    relative = [str(_relative(member, root.resolve())) for member in members]
    ensemble = {"ensemble": {"members": relative, "average": "probabilities"}}
    atomic_write_text(root / "ensemble.yaml", yaml.safe_dump(ensemble, sort_keys=False))
    return summary


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path


def _markdown(summary: dict[str, Any], keys: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{float(value):.3f}"

    lines = [
        "# Cross-validation",
        "",
        f"{len(summary['folds'])} folds; each validated on its own fold (stratified by class, near-duplicate groups "
        "kept whole). Figures: the evaluation report of each fold's best checkpoint on its validation fold.",
        "",
        "| fold | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for entry in summary["folds"]:
        lines.append(f"| {entry['fold']} | " + " | ".join(cell(entry["figures"][k]) for k in keys) + " |")
    lines.append("| mean | " + " | ".join(cell(summary["mean"][k]) for k in keys) + " |")
    lines.append("| sd | " + " | ".join(cell(summary["sd"][k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def cv(argv: Sequence[str], main: Callable[[list[str]], int]) -> int:
    """Run the command: every fold (skipping finished ones, resuming interrupted ones), then the summary."""
    if not argv:
        raise UsageError(f"cv needs --config CFG and --folds K. {USAGE}")
    if argv[0] in ("-h", "--help"):
        print(USAGE, (__doc__ or "").split("\n\n")[1].replace("``", ""), OPTIONS, sep="\n\n")
        raise SystemExit(0)
    folds, summarize_only, fit_args = _split_args(argv)
    if folds is None:
        raise UsageError(f"cv needs --folds K. {USAGE}")
    root = _root_dir(fit_args)
    for fold in range(folds):
        fold_dir = root / f"fold{fold}"
        if not summarize_only:
            status = _run_fold(main, fit_args, folds, fold, fold_dir)
        elif not (fold_dir / FOLD_DONE).is_file() and _best_checkpoint(fold_dir) is not None:
            status = _score_fold(main, fit_args, folds, fold, fold_dir)  # fitted elsewhere: scored here
        else:
            status = 0
        if status:
            return status
    summary = summarize_folds(root, folds)
    mean = summary["mean"]
    print(
        f"cv: {folds} folds in {root}: tumour Dice {mean.get('dice_pooled', float('nan')):.3f} "
        f"(sd {summary['sd'].get('dice_pooled') or 0:.3f}), accuracy {mean.get('accuracy', float('nan')):.3f} "
        f"(sd {summary['sd'].get('accuracy') or 0:.3f}); {root / 'cv_summary.md'}, {root / 'ensemble.yaml'}"
    )
    return 0


def cv_main(argv: Sequence[str]) -> int:
    """``python -m brain_mtl cv`` (see the module docstring)."""
    try:
        return cv(list(argv), command_line)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
