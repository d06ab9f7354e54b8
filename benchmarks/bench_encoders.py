"""Compare encoders under the joint U-Net on this machine: parameters, GFLOPs, training throughput, latency.

Not part of the test run. Example (what docs/models.md reports)::

    python benchmarks/bench_encoders.py --threads 2 --size 256
    python benchmarks/bench_encoders.py --encoders resnet18,mobilenetv3_large_100 --size 160 --steps 3

For each encoder: parameters of the joint network; GFLOPs of one forward pass of one image at ``--size``
(``torch.utils.flop_counter``: multiply-adds counted as 2 FLOPs); training throughput of the project's joint step
(a segmentation batch through the whole network, a classification batch through ``classify``, BCE + cross-entropy,
backward, AdamW), in images/s counting both batches, under bf16 autocast on the CPU (the quickstart's precision);
and the median batch-1 forward latency in fp32 eval mode. Each timing runs ``--warmup`` untimed repetitions first.
Run it on an idle machine: on 2 cores any other process stalls PyTorch's threads.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from common import cpu_name, time_calls
from torch.utils.flop_counter import FlopCounterMode

from brain_mtl.models import UNet

DEFAULT_ENCODERS = (
    "reference:16",
    "reference:64",
    "resnet18",
    "resnet34",
    "efficientnet_b0",
    "convnext_tiny",
    "regnety_008",
    "mobilenetv3_large_100",
)


def build(spec: str) -> UNet:
    """``reference:<base_channels>`` or a timm encoder name."""
    name, _, width = spec.partition(":")
    if name == "reference":
        return UNet(base_channels=int(width or 64), classifier_hidden=256)
    return UNet(encoder=name, classifier_hidden=256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS), help="comma list (reference:<width>)")
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--batch", type=int, default=16, help="images per stream in a training step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=10, help="timed batch-1 forward passes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__} | {cpu_name()} | threads {torch.get_num_threads()} | {args.size}x{args.size} | "
        f"training: batch {args.batch} + {args.batch}, bf16 autocast | latency: batch 1, fp32"
    )
    print("| encoder | parameters | GFLOPs / image | train img/s | latency ms (batch 1) |")
    print("|---|---|---|---|---|")
    for spec in args.encoders.split(","):
        print(measure(spec, args), flush=True)


def measure(spec: str, args: argparse.Namespace) -> str:
    """One table row for one encoder."""
    torch.manual_seed(0)
    model = build(spec)
    params = sum(p.numel() for p in model.parameters())
    one = torch.randn(1, 3, args.size, args.size)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(one)
    gflops = counter.get_total_flops() / 1e9
    with torch.no_grad():
        latency = statistics.median(time_calls(lambda: model(one), args.warmup, args.repeats))

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seg = torch.randn(args.batch, 3, args.size, args.size)
    cls = torch.randn(args.batch, 3, args.size, args.size)
    masks = (torch.rand(args.batch, 1, args.size, args.size) > 0.98).float()
    labels = torch.randint(0, 4, (2 * args.batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(seg)
            class_logits = torch.cat([out.class_logits, model.classify(cls)]).float()
            loss = F.binary_cross_entropy_with_logits(out.mask_logits.float(), masks) + F.cross_entropy(
                class_logits, labels
            )
        loss.backward()
        optimizer.step()

    step_s = statistics.median(time_calls(step, args.warmup, args.steps))
    return f"| {spec} | {params:,} | {gflops:.2f} | {2 * args.batch / step_s:.1f} | {latency * 1000:.0f} |"


if __name__ == "__main__":
    main()
