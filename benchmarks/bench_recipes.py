"""Train candidate recipes on one BRISC-layout folder for the same budget, one at a time, and tabulate them.

    python benchmarks/bench_recipes.py --root /path/to/brisc2025 --out runs/recipes --budget-minutes 60 \\
        configs/recipes/*.yaml

Each candidate is a fit config. For a wall-clock budget (``--budget-minutes``) the script first times a short probe
fit of the candidate (``--probe-steps`` training steps, timed after the first 25, whose page faults and caches make
them slower, and a few validation batches) and sets ``max_steps`` so that
the training steps plus the validation passes at each epoch's end fill the budget, so that the whole schedule
(cosine decay, warm-up) runs in it; ``trainer.max_time`` caps the fit at the budget all the same. The budget is the
fit's training time as Lightning's timer counts it (from the first step: not the indexing and image cache before
it, which ``fit (min)`` in the table includes). A candidate with ``model.lr_schedule_clock: time`` needs no probe:
its schedule ends at ``max_time`` itself, which is set to the budget (its ``max_epochs`` must exceed what fits).
With ``--epochs`` every candidate trains that many epochs instead.
Then the final weights (saved when training ends: no selection on the validation split they are scored on) are
scored on the carved validation split by ``python -m brain_mtl test --data.test_split val`` with the config's own
test settings (TTA included), and the report's figures are collected.

A candidate may instead be an evaluation variant of another: a YAML file with ``bench_recipes: {from: NAME}`` and
``model:`` test settings (e.g. ``tta: flip``) scores NAME's weights again with those settings, without training.

Resumable: a candidate with a ``result.json`` in its folder is not run again; an interrupted fit resumes from its
``last.ckpt`` (Lightning's timer keeps the elapsed time in the checkpoint). Writes ``results.json`` and
``results.md`` in ``--out`` after every candidate. Every fit and test logs to ``<out>/<name>/*.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from brain_mtl.commands.cv import fold_figures

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name

PROBE = '''
import json, resource, time
from lightning.pytorch import Callback


class RecipeProbe(Callback):
    """Times training steps and validation batches, counts the images trained on, saves the final weights.

    Writes a JSON file, and the final weights to ``final`` (when given), when training ends.
    """

    def __init__(self, out: str, final: str = "", warmup: int = 25) -> None:
        self.out, self.final, self.warmup = out, final, warmup
        self.step_times, self.images, self.last, self.start = [], 0, None, None
        self.val_times, self.val_last, self.val_batches = [], None, 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val_last = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val_times.append(time.perf_counter() - self.val_last)

    def on_train_end(self, trainer, pl_module):
        if self.final:
            trainer.save_checkpoint(self.final)

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.step_times.append(time.perf_counter() - self.last)
        self.images += sum(len(part["label"]) for part in batch.values())

    def on_fit_end(self, trainer, pl_module):
        timed = self.step_times[self.warmup:] or self.step_times
        result = {
            "train_seconds": time.perf_counter() - self.start if self.start else 0.0,
            "seconds_per_step": sum(timed) / max(len(timed), 1),
            "steps": trainer.global_step,
            "epochs": trainer.current_epoch,
            "batches_per_epoch": trainer.num_training_batches,
            "val_seconds_per_batch": sum(self.val_times) / len(self.val_times) if self.val_times else 0.0,
            "val_batches": len(trainer.val_dataloaders) if trainer.val_dataloaders is not None else 0,
            "images": self.images,
            "precision": str(trainer.precision),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "stopped_by_time": trainer.global_step < min(
                trainer.max_steps if trainer.max_steps > 0 else float("inf"),
                (trainer.max_epochs or 0) * trainer.num_training_batches,
            ),
        }
        with open(self.out, "w") as handle:
            json.dump(result, handle)
'''

COLUMNS = [
    ("candidate", "name", "{}"),
    ("Dice (tumour, pooled)", "dice_pooled", "{:.3f}"),
    ("Dice (tumour, per image)", "dice_per_image", "{:.3f}"),
    ("glioma", "dice_glioma", "{:.3f}"),
    ("meningioma", "dice_meningioma", "{:.3f}"),
    ("pituitary", "dice_pituitary", "{:.3f}"),
    ("empty masks (tumour)", "empty_tumour_masks", "{}"),
    ("all-image Dice", "all_image_dice", "{:.3f}"),
    ("false-mask rate", "false_mask_rate", "{:.1%}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("macro F1", "macro_f1", "{:.3f}"),
    ("steps", "steps", "{}"),
    ("train (min)", "train_minutes", "{:.1f}"),
    ("fit (min)", "fit_minutes", "{:.1f}"),
    ("img/s", "images_per_second", "{:.1f}"),
    ("peak RSS (GiB)", "peak_rss_gib", "{:.2f}"),
]


def machine() -> dict:
    """The machine the candidates ran on."""
    from brain_mtl.commands.lightning import cpu_has_amx

    return {
        "cpu": cpu_name(),
        "amx": cpu_has_amx(),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def run_logged(command: list[str], cwd: Path, log: Path, env: dict) -> float:
    """Run a command with its output appended to ``log``; its wall time in seconds. Raises on a non-zero exit."""
    start = time.perf_counter()
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        done = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{command[3]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def fit_command(config: Path, root: str, probe_out: Path, extra: list[str], final: Path | None = None) -> list[str]:
    """``python -m brain_mtl fit`` on a candidate, quiet, with the probe callback."""
    command = [
        sys.executable, "-m", "brain_mtl", "fit", "--config", str(config), "--data.root", root,
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=recipe_probe.RecipeProbe", f"--trainer.callbacks.out={probe_out}",
    ]  # fmt: skip
    if final is not None:
        command.append(f"--trainer.callbacks.final={final}")
    return command + extra


def plan_steps(probe: dict, budget_s: float) -> int:
    """The most training steps that, with a full validation pass after each whole epoch, fit the budget.

    The budget is Lightning's ``max_time``: it counts training and validation from the first step, not the
    setup before it (indexing, the image cache), which ``fit (min)`` in the table includes.
    """
    step_s, per_epoch = probe["seconds_per_step"], probe["batches_per_epoch"]
    val_s = probe["val_seconds_per_batch"] * probe["val_batches"]
    steps = int(budget_s / step_s)
    while steps > 1 and steps * step_s + (steps // per_epoch) * val_s > budget_s:
        steps -= 1
    return steps


def max_time(seconds: float) -> str:
    """Lightning's ``DD:HH:MM:SS`` for a budget in seconds."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"00:{hours:02d}:{minutes:02d}:{seconds:02d}"


def figures(report: dict) -> dict:
    """The table's figures from a report.json."""
    seg = report["ungated"]["tumour_segmentation"]
    out = {
        **fold_figures(report),  # the figures cv's fold table shows, and the per-class Dice
        "empty_tumour_masks": seg["overall"]["n_empty_prediction"],
        "headline": report["headline"],
        "by_class": {
            name: {"dice_pooled": f["dice_pooled"], "n_images": f["n_images"], "empty": f["n_empty_prediction"]}
            for name, f in seg["by_class"].items()
        },
        "n_val_images": report["meta"]["n_images"],
        "leakage_groups": report["leakage"]["n_groups"],
    }
    return out


def score(config: Path, root: str, ckpt: Path, folder: Path, env: dict, log: Path) -> dict:
    """Test ``ckpt`` on the carved validation split with ``config``'s test settings; the report's figures."""
    out_dir = folder / "val_report"
    command = [
        sys.executable, "-m", "brain_mtl", "test", "--config", str(config), "--data.root", root,
        "--data.test_split", "val", "--ckpt_path", str(ckpt), "--trainer.logger", "false",
        "--trainer.default_root_dir", str(out_dir), "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    run_logged(command, folder, log, env)
    return figures(json.loads((out_dir / "report.json").read_text()))


def last_checkpoint(folder: Path) -> Path | None:
    """The newest last*.ckpt under a candidate's fit folder (to resume an interrupted fit)."""
    found = sorted(folder.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_candidate(config: Path, args: argparse.Namespace, env: dict, results: dict) -> dict:
    """Train (unless it is an evaluation variant) and score one candidate."""
    name = config.stem
    folder = Path(args.out) / name
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "bench.log"
    spec = yaml.safe_load(config.read_text()) or {}
    source = (spec.get("bench_recipes") or {}).get("from")
    if source:  # an evaluation variant: the same weights, other test settings
        trained = results.get(source)
        if trained is None:
            raise RuntimeError(f"{name}: candidate {source!r} has not run (list it before {name})")
        clean = {k: v for k, v in spec.items() if k != "bench_recipes"}
        base = yaml.safe_load(Path(trained["config"]).read_text())
        for key, value in clean.items():
            if isinstance(value, dict):
                base.setdefault(key, {}).update(value)
            else:
                base[key] = value
        merged = folder / "config.yaml"
        merged.write_text(yaml.safe_dump(base, sort_keys=False))
        start = time.perf_counter()
        row = {**trained, **score(merged, args.root, Path(trained["checkpoint"]), folder, env, log)}
        row.update(name=name, config=str(config.resolve()), variant_of=source, eval_seconds=time.perf_counter() - start)
        return row

    extra = list(args.override)
    probe_json = folder / "probe.json"
    row: dict = {"name": name, "config": str(config.resolve())}
    by_time = ((spec.get("model") or {}).get("lr_schedule_clock") or "steps") == "time"
    if args.budget_minutes and by_time:  # the schedule ends at max_time itself: no probe, no planned step count
        budget_s = args.budget_minutes * 60
        extra += ["--trainer.max_time", max_time(budget_s), "--trainer.max_steps", "-1"]
        row.update(planned_steps=None, probe_seconds_per_step=None)
    elif args.budget_minutes:
        budget_s = args.budget_minutes * 60
        if not probe_json.exists():
            probe_dir = folder / "probe"  # its own working folder: the config's relative run paths land there
            probe_dir.mkdir(exist_ok=True)
            setup_start = time.perf_counter()
            probe_args = [
                "--trainer.max_steps",
                str(args.probe_steps),
                "--trainer.limit_val_batches",
                "6",
                "--trainer.val_check_interval",
                str(args.probe_steps - 5),
                "--trainer.num_sanity_val_steps",
                "0",
            ]  # fmt: skip  (the logger stays: a config's LearningRateMonitor refuses a Trainer without one)
            wall = run_logged(fit_command(config, args.root, probe_json, [*extra, *probe_args]), probe_dir, log, env)
            probe = json.loads(probe_json.read_text())
            probe["setup_seconds"] = wall - probe["train_seconds"]
            probe["probe_wall_seconds"] = time.perf_counter() - setup_start
            probe_json.write_text(json.dumps(probe))
        probe = json.loads(probe_json.read_text())
        steps = plan_steps(probe, budget_s)
        epochs = math.ceil(steps / probe["batches_per_epoch"])
        extra += [
            "--trainer.max_steps", str(steps), "--trainer.max_epochs", str(epochs),
            "--trainer.max_time", max_time(budget_s),
        ]  # fmt: skip
        row.update(planned_steps=steps, probe_seconds_per_step=probe["seconds_per_step"])
    elif args.epochs:
        extra += ["--trainer.max_epochs", str(args.epochs)]

    fit_json = folder / "fit.json"
    fit_dir = folder / "fit"  # the fit's working folder: the config's relative run paths (runs/...) land there
    fit_dir.mkdir(exist_ok=True)
    final = folder / "final.ckpt"
    resume = last_checkpoint(fit_dir)
    if resume is not None:
        extra += ["--ckpt_path", str(resume)]
    wall = run_logged(fit_command(config, args.root, fit_json, extra, final), fit_dir, log, env)
    fit = json.loads(fit_json.read_text())
    ckpt = final
    row.update(
        checkpoint=str(ckpt),
        epochs=fit["epochs"],
        steps=fit["steps"],
        fit_minutes=wall / 60,
        train_minutes=fit["train_seconds"] / 60,
        images_per_second=fit["images"] / max(fit["train_seconds"], 1e-9),
        peak_rss_gib=fit["peak_rss_bytes"] / 2**30,
        precision=fit["precision"],
        stopped_by_time=fit["stopped_by_time"],
        resumed=resume is not None,
    )
    start = time.perf_counter()
    row.update(score(config, args.root, ckpt, folder, env, log))
    row["eval_seconds"] = time.perf_counter() - start
    return row


def write_tables(out: Path, results: dict, info: dict) -> None:
    """results.json and results.md."""
    (out / "results.json").write_text(json.dumps({"machine": info, "candidates": results}, indent=2))
    lines = [
        f"Machine: {info['cpu']}, {info['cpus']} CPUs, {info['torch_threads']} torch threads, "
        f"AMX {'yes' if info['amx'] else 'no'}, torch {info['torch']}. Budget: {info['budget']}.",
        "",
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in results.values():
        cells = []
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="candidate fit configs (and evaluation variants)")
    parser.add_argument("--root", help="a BRISC-layout folder (required unless --tables-only)")
    parser.add_argument("--out", default="runs/recipes")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-minutes", type=float, help="equal wall-clock budget per candidate fit")
    budget.add_argument("--epochs", type=int, help="equal number of epochs per candidate")
    parser.add_argument(
        "--probe-steps", type=int, default=50, help="steps of the timing probe (budget mode; the first 25 untimed)"
    )
    parser.add_argument("--override", action="append", default=[], help="extra fit argument, e.g. --data.seed=1")
    parser.add_argument("--tables-only", action="store_true", help="rewrite results.md from results.json, run nothing")
    args = parser.parse_args()
    if args.tables_only:
        saved = json.loads((Path(args.out) / "results.json").read_text())
        write_tables(Path(args.out), saved["candidates"], saved["machine"])
        return
    if not args.root or not args.configs or not (args.budget_minutes or args.epochs):
        parser.error("give --root, the candidate configs, and --budget-minutes or --epochs")
    args.root = str(Path(args.root).resolve())  # the fits run in their own folders
    args.out = str(Path(args.out).resolve())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe_probe.py").write_text(PROBE)
    paths = [str(out.resolve()), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    previous = json.loads((out / "results.json").read_text())["candidates"] if (out / "results.json").exists() else {}
    budget = f"{args.budget_minutes} min per fit" if args.budget_minutes else f"{args.epochs} epochs"
    info = {**machine(), "budget": budget}
    results: dict = {}
    for config in args.configs:
        name = config.stem
        result_file = out / name / "result.json"
        if result_file.exists():
            results[name] = json.loads(result_file.read_text())
            print(f"{name}: done before, kept", flush=True)
            continue
        print(f"{name}: running", flush=True)
        start = time.perf_counter()
        try:
            row = run_candidate(config.resolve(), args, env, {**previous, **results})
        except Exception as error:  # one failed candidate is reported; the others go on
            print(f"{name}: FAILED: {error}", flush=True)
            results[name] = {"name": name, "config": str(config.resolve()), "error": str(error)}
            write_tables(out, results, info)
            continue
        row["wall_minutes"] = (time.perf_counter() - start) / 60
        result_file.write_text(json.dumps(row, indent=2))
        results[name] = row
        write_tables(out, results, info)
        print(f"{name}: Dice {row['dice_pooled']:.3f}, accuracy {row['accuracy']:.3f}", flush=True)
    write_tables(out, results, info)


if __name__ == "__main__":
    main()
