"""Mixed-precision fit check: the BRISC configs for a few hundred steps in 16-mixed and bf16-mixed.

For each config and precision it runs ``fit`` as the command line builds it (``BrainTumorCLI``), on a synthetic
dataset of BRISC's size (5,000 training and 1,000 test classification images, generated once into the cache folder),
with a callback that records the training loss of every step and the precision plugin's GradScaler. It then checks:

- every loss is finite;
- the loss falls: the mean of the last fifth of the steps is below the mean of the first fifth;
- ``16-mixed`` trains with an active GradScaler (finite scale), ``bf16-mixed`` and ``32-true`` without one;
- each run trained in the precision asked for (a CPU turns ``16-mixed`` into ``bf16-mixed``);

and prints one line per run (images/s over the steps after the first fifth) and ``ALL CHECKS PASSED`` or the failures
(exit status 1). A run that raises is reported as failed and the others still run. On a GPU machine, as one command:

    python benchmarks/fit_precision_check.py --steps 300
    python benchmarks/fit_precision_check.py --steps 100 --compile false    # a tight device budget

The default is four fits (two configs, two precisions), each compiling the network first (``model.compile: true`` in
both configs), after writing the 6,000-image synthetic set once: several minutes in all. ``--compile false`` and
fewer steps keep it to the fits themselves.

A CPU smoke test of the script itself (tiny network and images; tests/task/test_speed_options.py runs it so):

    python benchmarks/fit_precision_check.py --accelerator cpu --precisions 32-true --steps 12 --size 32 \
        --width 4 --lr 0.01 --n-train 60 --n-test 20 --configs configs/brisc_unet.yaml --compile false
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from brain_mtl.commands.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]


class StepRecorder(Callback):
    """Loss, wall time and GradScaler state of every training step."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.times: list[float] = []
        self.scales: list[float | None] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach()))
        self.times.append(time.perf_counter())
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.scales.append(float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None)


def dataset(cache: Path, n_train: int, n_test: int) -> Path:
    """A synthetic BRISC-layout folder of the given size, generated once under ``cache``."""
    from brain_mtl.data.synthetic import generate_synthetic_dataset

    root = cache / f"synthetic_{n_train}_{n_test}"
    if not (root / "classification_task").is_dir():
        generate_synthetic_dataset(root, n_train, n_test, seed=42, workers=min(16, (os.cpu_count() or 2) - 1))
    return root


def run(config: str, precision: str, root: Path, scratch: Path, args: argparse.Namespace) -> dict:
    """One fit; returns what the checks need."""
    from brain_mtl.commands.lightning import BrainTumorCLI
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.task.module import BrainTumorModule

    argv = [
        "--config", config,
        "--data.root", str(root), "--data.image_size", str(args.size), "--data.batch_size", str(args.batch),
        "--trainer.accelerator", args.accelerator, "--trainer.devices", "1", "--trainer.precision", precision,
        "--trainer.max_steps", str(args.steps), "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if args.width:
        argv += ["--model.base_channels", str(args.width)]
    if args.compile:
        argv += ["--model.compile", args.compile]
    if args.lr:
        argv += ["--model.lr", str(args.lr)]
    # The configs write runs/<config>/ (logs, checkpoints) relative to the working folder: a folder of its own.
    folder = scratch / f"{Path(config).stem}_{precision}"
    folder.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        cli = BrainTumorCLI(BrainTumorModule, BrainTumorDataModule, args=argv, run=False, save_config_callback=None)
        recorder = StepRecorder()
        cli.trainer.callbacks.append(recorder)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        os.chdir(cwd)
    fifth = max(1, len(recorder.losses) // 5)
    timed = recorder.times[fifth - 1 :]
    images_per_s = 2 * args.batch * (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 else float("nan")
    return {
        "config": Path(config).name,
        "requested": precision,
        "precision": str(cli.trainer.precision),
        "steps": len(recorder.losses),
        "first": sum(recorder.losses[:fifth]) / fifth,
        "last": sum(recorder.losses[-fifth:]) / fifth,
        "finite": all(math.isfinite(v) for v in recorder.losses),
        "scales": [s for s in recorder.scales if s is not None],
        "scaler_steps": sum(s is not None for s in recorder.scales),
        "images_per_s": images_per_s,
    }


def failures(result: dict, expected_steps: int) -> list[str]:
    """What a run got wrong (empty when it passed)."""
    found = []
    if result["precision"] != result["requested"]:
        found.append(f"trained in {result['precision']}, not the requested {result['requested']}")
    if result["steps"] != expected_steps:
        found.append(f"trained {result['steps']} steps, not {expected_steps}")
    if not result["finite"]:
        found.append("a non-finite training loss")
    if not result["last"] < result["first"]:
        found.append(f"the loss did not fall ({result['first']:.4f} -> {result['last']:.4f})")
    if result["precision"] == "16-mixed":
        if result["scaler_steps"] != result["steps"] or not all(math.isfinite(s) for s in result["scales"]):
            found.append(f"GradScaler active on {result['scaler_steps']} of {result['steps']} steps")
    elif result["scaler_steps"]:
        found.append(f"a GradScaler in {result['precision']} (only 16-mixed needs one)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        type=lambda v: str(Path(v).resolve()),  # each fit runs in a folder of its own
        nargs="+",
        default=[str(REPO / "configs" / f"{c}.yaml") for c in ("brisc_unet", "brisc_attention_unet")],
    )
    parser.add_argument("--precisions", nargs="+", default=["16-mixed", "bf16-mixed"])
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=None, help="base channels (default: the config's)")
    parser.add_argument("--lr", type=float, default=None, help="override model.lr (default: the config's)")
    parser.add_argument("--compile", default=None, choices=["true", "false"], help="override model.compile")
    parser.add_argument("--n-train", type=int, default=5000, help="synthetic classification images in train")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument(
        "--data-cache", default=str(REPO / "benchmarks" / ".data"), type=lambda v: str(Path(v).resolve())
    )
    parser.add_argument("--scratch", default=None, help="run folders (default: a temporary folder)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as `python -m brain_mtl` does
    root = dataset(Path(args.data_cache), args.n_train, args.n_test)
    hardware = torch.cuda.get_device_name() if args.accelerator in ("gpu", "cuda") else args.accelerator
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(args.scratch or tmp)
        for config in args.configs:
            for precision in args.precisions:
                try:
                    result = run(config, precision, root, scratch, args)
                except (Exception, SystemExit) as error:  # a failed run must not hide the others' results
                    print(f"{hardware} | {Path(config).name} | {precision} | FAILED: {error!r}", flush=True)
                    problems.append(f"{Path(config).name} {precision}: {error!r}")
                    continue
                found = failures(result, args.steps)
                scale = f", GradScaler scale {result['scales'][-1]:g}" if result["scales"] else ""
                print(
                    f"{hardware} | {result['config']} | {result['precision']} | {result['steps']} steps | loss "
                    f"{result['first']:.4f} -> {result['last']:.4f} | {result['images_per_s']:.1f} img/s{scale} | "
                    + ("ok" if not found else "FAILED: " + "; ".join(found)),
                    flush=True,
                )
                problems += [f"{result['config']} {result['precision']}: {f}" for f in found]
    print("ALL CHECKS PASSED" if not problems else "FAILED:\n" + "\n".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
