"""Training throughput, side by side in one run: the reference notebook's loop, a raw loop, and `brain_mtl fit`.

On the same BRISC-layout folder (default: a synthetic one with every image upscaled to 512x512, the real data's
common size), the same network width, image size and machine:

(a) ``notebook``: a faithful re-implementation of the reference notebook's loop. Per iteration a segmentation batch
    goes through the whole network (BCE + cross-entropy, optimizer step), then a classification batch through the
    whole network (cross-entropy, optimizer step); fp32, ``num_workers=0``, albumentations Resize + HorizontalFlip +
    Rotate(15) + Normalize, AdamW lr 1e-4.
(a') ``notebook_kept`` (not run by default): the same loop with brain_mtl's host allocator setting
    (:func:`brain_mtl.commands.allocator.keep_freed_memory`), to show what that setting alone gives the notebook.
(b) ``raw``: a plain PyTorch loop doing exactly brain_mtl's work per step, on brain_mtl's own loaders and settings
    (the config's precision, memory layout, workers; the host allocator setting of ``python -m brain_mtl``): the
    segmentation batch through the whole network, the classification batch through the encoder and class head only,
    the joint loss, one optimizer step.
(c) ``fit``: ``python -m brain_mtl fit --config <config>`` as a user runs it (its own precision, loaders,
    callbacks), in a subprocess, with a timing callback added and validation left out of the timed steps.

Each counts the images of both streams (segmentation + classification) per second over the timed steps (data
loading included), after untimed warm-up steps. It prints the ratio (c)/(a), Lightning's overhead (c)/(b), and the
achieved GFLOP/s (PyTorch's FLOP counter on one step) against the measured peak of this machine for the step's
precision (the best of a large matmul and a U-Net-sized 3x3 convolution, forward and backward).

    python benchmarks/bench_train.py                                # reference net, 256 px, configs/brisc_unet.yaml
    python benchmarks/bench_train.py --config configs/brisc_attention_unet.yaml
    python benchmarks/bench_train.py --device cuda --steps 50       # MFU against the bf16 dense peak

Run it on an idle machine: any other process on a 2-core machine stalls PyTorch's threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from common import cpu_name, time_calls, upscale_copy

from brain_mtl.commands.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]

# Dense bf16 peak of known GPUs (TFLOP/s, without sparsity), for MFU.
GPU_BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


# ----------------------------------------------------------------------------------------------- data


def prepare_root(args: argparse.Namespace, scratch: Path) -> Path:
    """The benchmark folder: ``--root``, else a synthetic set upscaled to ``--source-size`` (cached on disk)."""
    if args.root:
        return Path(args.root)
    from brain_mtl.data.synthetic import generate_synthetic_dataset

    cache = Path(args.data_cache) / f"synthetic_{args.n_train}_{args.source_size}"
    if not (cache / "classification_task").is_dir():
        native = scratch / "native"
        generate_synthetic_dataset(native, args.n_train, 20, seed=42)
        upscale_copy(native, cache, args.source_size)
    return cache


def notebook_loaders(root: Path, size: int, batch: int) -> tuple[torch.utils.data.DataLoader, ...]:
    """The notebook's two loaders: segmentation pairs and classification images of ``train``, fp32 tensors."""
    import albumentations as A
    import cv2
    import numpy as np

    from brain_mtl.data import index_dataset

    index = index_dataset(root, decode=False)
    transform = A.Compose(
        [A.Resize(size, size), A.HorizontalFlip(p=0.5), A.Rotate(limit=15, p=0.5), A.Normalize()],
    )

    class Files(torch.utils.data.Dataset):
        def __init__(self, records, with_masks: bool) -> None:
            self.records, self.with_masks = records, with_masks

        def __len__(self) -> int:
            return len(self.records)

        def __getitem__(self, i: int):
            record = self.records[i]
            image = cv2.cvtColor(cv2.imread(str(record.path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            if self.with_masks:
                mask = (cv2.imread(str(record.mask_path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.float32)
                out = transform(image=image, mask=mask)
                return (
                    torch.from_numpy(out["image"].transpose(2, 0, 1).copy()),
                    torch.from_numpy(out["mask"][None].copy()),
                    record.label,
                )
            out = transform(image=image)
            return torch.from_numpy(out["image"].transpose(2, 0, 1).copy()), record.label

    seg = Files(index.segmentation("train"), True)
    cls = Files(index.classification("train"), False)
    return (
        torch.utils.data.DataLoader(seg, batch_size=batch, shuffle=True, num_workers=0, drop_last=True),
        torch.utils.data.DataLoader(cls, batch_size=batch, shuffle=True, num_workers=0, drop_last=True),
    )


# ----------------------------------------------------------------------------------------------- the loops


def endless(loader):
    while True:
        yield from loader


NOTEBOOK_LABEL = "(a) notebook loop, fp32, num_workers=0"


def run_notebook(args, root: Path, device: torch.device, sync, label: str = NOTEBOOK_LABEL) -> dict:
    from brain_mtl.models import UNet

    torch.manual_seed(0)
    model = UNet(base_channels=args.width, attention=args.attention).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seg_loader, cls_loader = notebook_loaders(root, args.size, args.batch)
    seg_iter, cls_iter = endless(seg_loader), endless(cls_loader)

    def iteration() -> None:
        images, masks, labels = (t.to(device) if torch.is_tensor(t) else t for t in next(seg_iter))
        out = model(images)
        loss = F.binary_cross_entropy_with_logits(out.mask_logits, masks) + F.cross_entropy(
            out.class_logits, labels.to(device)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images, labels = next(cls_iter)
        out = model(images.to(device))
        loss = F.cross_entropy(out.class_logits, labels.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times = time_calls(iteration, args.warmup, args.steps, sync)
    flops = count_flops(lambda: notebook_flops_step(model, args, device))
    return summarize(label, times, 2 * args.batch, flops, "fp32")


def notebook_flops_step(model, args, device) -> None:
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    for _ in range(2):  # two full forward + backward passes per iteration
        out = model(x)
        (out.mask_logits.mean() + out.class_logits.mean()).backward()


def build_from_config(args, root: Path):
    """The module and datamodule that ``fit --config`` builds (same classes, same arguments)."""
    from brain_mtl.commands.lightning import default_precision
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.task.module import BrainTumorModule

    config = yaml.safe_load(Path(args.config).read_text())
    model_args = {**config.get("model", {}), "base_channels": args.width, "attention": args.attention}
    if args.channels_last is not None:
        model_args["channels_last"] = args.channels_last == "true"
    if args.compile is not None:
        model_args["compile"] = args.compile == "true"
    data_args = {**config.get("data", {}), "root": str(root), "image_size": args.size, "batch_size": args.batch}
    precision = args.precision or config["trainer"].get("precision") or default_precision(args.device)
    return BrainTumorModule(**model_args), BrainTumorDataModule(**data_args), precision


def run_raw(args, root: Path, device: torch.device, sync) -> dict:
    if args.allocator == "brain_mtl":
        keep_freed_memory()  # what `python -m brain_mtl` does before any command
    torch.manual_seed(0)
    module, datamodule, precision = build_from_config(args, root)
    module.to(device).train()
    datamodule.setup("fit")
    if module.hparams.channels_last:
        module.model.to(memory_format=torch.channels_last)
    if module.hparams.compile:
        module.model.compile()
    optimizer = torch.optim.AdamW(module.parameters(), lr=module.hparams.lr, weight_decay=module.hparams.weight_decay)
    batches = endless(datamodule.train_dataloader())
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    def step() -> None:
        batch, _, _ = next(batches)
        batch = {k: {n: v.to(device) if torch.is_tensor(v) else v for n, v in b.items()} for k, b in batch.items()}
        batch = module.on_after_batch_transfer(batch, 0)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = {"seg": module(batch["seg"]["image"]), "cls": module.model.classify(batch["cls"]["image"])}
            loss = module.compute_loss(outputs, batch, "train").total
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    times = time_calls(step, args.warmup, args.steps, sync)
    flops = count_flops(lambda: brain_mtl_flops_step(module, args, device))
    return summarize(f"(b) raw PyTorch loop, brain_mtl's work, {precision}", times, 2 * args.batch, flops, precision)


def brain_mtl_flops_step(module, args, device) -> None:
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    out = module(x)
    logits = module.model.classify(x)
    (out.mask_logits.mean() + out.class_logits.mean() + logits.mean()).backward()


TIMER = '''
import json, resource, time
from lightning.pytorch import Callback

class StepTimer(Callback):
    """Wall time of each training step, data loading included (end of one step to the end of the next)."""

    def __init__(self, out: str, warmup: int) -> None:
        self.out, self.warmup, self.times, self.last = out, warmup, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self.last is not None and batch_idx > self.warmup:
            self.times.append(now - self.last)
        self.last = now

    def on_train_end(self, trainer, pl_module):
        with open(self.out, "w") as handle:
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
            json.dump({"times": self.times, "precision": str(trainer.precision), "peak_rss": peak_rss}, handle)
'''


def run_fit(args, root: Path, scratch: Path) -> dict:
    (scratch / "bench_timer.py").write_text(TIMER)
    out = scratch / "fit_times.json"
    steps = args.warmup + args.steps + 1
    command = [
        sys.executable, "-m", "brain_mtl", "fit", "--config", str(args.config),
        "--data.root", str(root), "--data.image_size", str(args.size), "--data.batch_size", str(args.batch),
        "--model.base_channels", str(args.width), "--model.attention", str(args.attention).lower(),
        "--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.default_root_dir", str(scratch / "run"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=bench_timer.StepTimer", f"--trainer.callbacks.out={out}",
        f"--trainer.callbacks.warmup={args.warmup}",
    ]  # fmt: skip
    if args.precision:
        command += ["--trainer.precision", args.precision]
    if args.channels_last is not None:
        command += ["--model.channels_last", args.channels_last]
    if args.compile is not None:
        command += ["--model.compile", args.compile]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(scratch), os.environ.get("PYTHONPATH", "")])}
    env["BRAIN_MTL_ALLOCATOR"] = args.allocator
    subprocess.run(command, check=True, cwd=scratch, env=env)
    result = json.loads(out.read_text())
    module, _, _ = build_from_config(args, root)
    device = torch.device(args.device)
    flops = count_flops(lambda: brain_mtl_flops_step(module.to(device), args, device))
    label = f"(c) python -m brain_mtl fit --config {Path(args.config).name}, {result['precision']}"
    row = summarize(label, result["times"], 2 * args.batch, flops, result["precision"])
    return {**row, "peak_rss_gib": result["peak_rss"] / 2**30}


# ----------------------------------------------------------------------------------------------- FLOPs and peak


def count_flops(step) -> float:
    """FLOPs of one call of ``step`` (PyTorch's counter: 2 per multiply-add, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def measure_peak(device: torch.device, dtype: torch.dtype, sync, seconds: float = 3.0) -> dict:
    """Best GFLOP/s of a large matmul and of a U-Net-sized 3x3 convolution (forward + backward, both layouts)."""
    results = {}
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    results["matmul"] = _rate(lambda: a @ b, 2 * 2048**3, seconds, sync)
    conv_flops = 3 * 2 * 8 * 128 * 128 * 9 * 64 * 64  # forward, grad input, grad weight
    for layout in (torch.contiguous_format, torch.channels_last):
        conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device=device, dtype=dtype)
        conv = conv.to(memory_format=layout)
        x = torch.randn(8, 128, 64, 64, device=device, dtype=dtype).contiguous(memory_format=layout)
        x.requires_grad_(True)

        def conv_step(conv=conv, x=x) -> None:
            conv(x).sum().backward()

        name = "channels_last" if layout == torch.channels_last else "contiguous"
        results[f"conv3x3_fwd_bwd_{name}"] = _rate(conv_step, conv_flops, seconds, sync)
    results["peak"] = max(results.values())
    return results


def _rate(fn, flops: float, seconds: float, sync) -> float:
    fn()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        fn()
        count += 1
    sync()
    return flops * count / (time.perf_counter() - start) / 1e9


def summarize(label: str, times: list[float], images_per_step: int, flops: float, precision: str) -> dict:
    seconds = sum(times) / len(times)
    return {
        "label": label,
        "precision": precision,
        "steps": len(times),
        "times": times,
        "s_per_step": seconds,
        "images_per_s": images_per_step / seconds,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / seconds / 1e9,
    }


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "brisc_unet.yaml"))
    parser.add_argument("--root", default=None, help="a BRISC-layout folder (default: synthetic, 512x512)")
    parser.add_argument("--data-cache", default=str(REPO / "benchmarks" / ".data"))
    parser.add_argument("--n-train", type=int, default=240, help="synthetic training images")
    parser.add_argument("--source-size", type=int, default=512, help="side of the synthetic images on disk")
    parser.add_argument("--size", type=int, default=256, help="training image side")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=64, help="base channels (reference: 64)")
    parser.add_argument("--attention", action="store_true", help="the attention variant (overrides the config)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (iterations of the notebook loop)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--modes", default="notebook,raw,fit")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU; default: all)")
    parser.add_argument("--peak-seconds", type=float, default=3.0)
    parser.add_argument("--precision", default=None, help="override the config's precision in (b) and (c)")
    parser.add_argument("--channels_last", default=None, choices=["true", "false"], help="override model.channels_last")
    parser.add_argument("--compile", default=None, choices=["true", "false"], help="override model.compile")
    parser.add_argument(
        "--allocator",
        default="brain_mtl",
        choices=["brain_mtl", "system"],
        help="(b) and (c): brain_mtl's host allocator setting (the default) or glibc's defaults (BRAIN_MTL_ALLOCATOR)",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    args.config = str(Path(args.config).resolve())  # the fit runs in a scratch folder
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    modes = args.modes.split(",")
    if args.allocator == "system" and "notebook_kept" in modes and "raw" in modes:
        # mallopt cannot be undone in a process: (b) would run with the setting it is asked to leave out.
        parser.error("--allocator system with both notebook_kept and raw: run them in separate invocations")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        root = prepare_root(args, scratch)
        rows = []
        if "notebook" in modes:
            rows.append(run_notebook(args, root, device, sync))
        if "notebook_kept" in modes:  # after (a): the allocator setting lasts for the rest of the process
            keep_freed_memory()
            label = f"(a') {NOTEBOOK_LABEL[4:]}, brain_mtl's allocator setting"
            rows.append(run_notebook(args, root, device, sync, label))
        if "raw" in modes:
            rows.append(run_raw(args, root, device, sync))
        if "fit" in modes:
            rows.append(run_fit(args, root, scratch))
    peaks = {}
    for precision in sorted({r["precision"] for r in rows}):
        dtype = torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32
        peaks[precision] = measure_peak(device, dtype, sync, args.peak_seconds)
    hardware = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    print(
        f"\n{hardware} | torch {torch.__version__} | threads {torch.get_num_threads()} | width {args.width} | "
        f"attention {args.attention} | {args.size} px | batch {args.batch}+{args.batch} | data {root}"
    )
    print("| loop | img/s | s/step | GFLOP/step | GFLOP/s | peak GFLOP/s (precision) | share of peak |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        peak = peaks[r["precision"]]["peak"]
        r["share_of_peak"] = r["gflops"] / peak
        print(
            f"| {r['label']} | {r['images_per_s']:.3f} | {r['s_per_step']:.2f} | {r['gflop_per_step']:.0f} | "
            f"{r['gflops']:.0f} | {peak:.0f} ({r['precision']}) | {100 * r['share_of_peak']:.0f}% |"
        )
    by = {r["label"][:3]: r for r in rows}
    if "(a)" in by and "(c)" in by:
        print(
            f"(c)/(a) brain_mtl fit vs the notebook loop: {by['(c)']['images_per_s'] / by['(a)']['images_per_s']:.2f}x"
        )
    if "(c)" in by:
        print(f"peak resident memory of the fit process: {by['(c)']['peak_rss_gib']:.2f} GiB")
    if "(a'" in by and "(c)" in by:
        ratio = by["(c)"]["images_per_s"] / by["(a'"]["images_per_s"]
        print(f"(c)/(a') against the notebook loop with the same allocator setting: {ratio:.2f}x")
    if "(b)" in by and "(c)" in by:
        overhead = by["(b)"]["images_per_s"] / by["(c)"]["images_per_s"] - 1
        print(f"Lightning overhead, (b)/(c) - 1: {100 * overhead:+.1f}%")
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in GPU_BF16_PEAK_TFLOPS.items() if k in name), None)
        for r in rows:
            if peak:
                print(f"MFU {r['label']}: {100 * r['gflops'] / (peak * 1000):.1f}% of {peak:.0f} TFLOP/s bf16 dense")
    print("peaks:", json.dumps({k: {n: round(v) for n, v in p.items()} for k, p in peaks.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "peaks": peaks}, indent=2))


if __name__ == "__main__":
    main()
