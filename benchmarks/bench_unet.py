"""Time the reference-size UNet on this machine: forward at batch 1 and a training step at batch 16.

Not part of the test run. Example (what docs/models.md reports)::

    python benchmarks/bench_unet.py --threads 2

Each measurement runs ``--warmup`` untimed repetitions, then reports the median (and min/max) of ``--repeats``
(forward) or ``--steps`` (training step) timed ones. A training step is the joint loss of the project (BCE on
the mask + cross-entropy on the class), backward and one AdamW step, as in the reference notebook. On CPU,
"bf16" means ``torch.autocast("cpu", dtype=torch.bfloat16)``; on CUDA, "fp16" means fp16 autocast with a
GradScaler-free step (timing only).
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from common import cpu_name, time_calls

from brain_mtl.models import UNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", action="store_true", help="benchmark the attention variant")
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default=None, help="comma list among fp32,bf16,fp16 (default per device)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    precisions = (args.precisions or ("fp32,fp16,bf16" if on_cuda else "fp32,bf16")).split(",")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)

    model = UNet(attention=args.attention).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x1 = torch.randn(1, 3, args.size, args.size, device=device)
    xb = torch.randn(args.train_batch, 3, args.size, args.size, device=device)
    masks = (torch.rand(args.train_batch, 1, args.size, args.size, device=device) > 0.98).float()
    labels = torch.randint(0, model.num_classes, (args.train_batch,), device=device)

    print(
        f"UNet(attention={args.attention}) {n_params:,} parameters | torch {torch.__version__} | {device} "
        f"{torch.cuda.get_device_name() if on_cuda else cpu_name()} | "
        f"threads {torch.get_num_threads()} | input {args.size}x{args.size}"
    )
    print("| measurement | precision | median s | min s | max s | n |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

        def autocast(dtype=dtype):
            return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

        def forward() -> None:
            with torch.no_grad(), autocast():
                model(x1)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = model(xb)
                loss = F.binary_cross_entropy_with_logits(out.mask_logits.float(), masks) + F.cross_entropy(
                    out.class_logits.float(), labels
                )
            loss.backward()
            optimizer.step()

        model.eval()
        rows = [("forward, batch 1", time_calls(forward, args.warmup, args.repeats, sync))]
        model.train()
        rows.append((f"train step, batch {args.train_batch}", time_calls(train_step, args.warmup, args.steps, sync)))
        for name, times in rows:
            print(
                f"| {name} | {precision} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} "
                f"| {len(times)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
