"""Inference latency per image at batch 1: PyTorch eager fp32, eager bf16 autocast, ONNX Runtime (CPU).

Not part of the test run. What docs/benchmarks.md reports::

    python benchmarks/bench_inference.py --threads 2 --markdown

For each network size (``--base_channels``: 64 is the reference notebook's network, 16 the quickstart's) it
builds a randomly initialised UNet (depth 4; latency does not depend on the weights), exports it to ONNX with
``brain_mtl.inference.export.export_onnx`` into a temporary folder, and times one ``(1, 3, size, size)`` forward pass
``--repeats`` times after ``--warmup`` untimed ones, for:

* ``torch fp32``: ``model(x)`` under ``torch.inference_mode()``;
* ``torch bf16``: the same inside ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* ``onnxruntime``: ``InferenceSession.run`` with the CPU provider, ``intra_op_num_threads = --threads``,
  graph optimisations on (ORT's default).

Only the network is timed (no file reading, resizing or writing). The 1-minute load average before and after is
printed, since other processes on a shared machine change the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import cpu_name, time_calls

from brain_mtl.inference.export import ONNX_INPUT, export_onnx
from brain_mtl.models import UNet

# Constructor arguments of the two benchmarked networks (classifier widths as in the shipped configs).
NETWORKS = {
    64: {"base_channels": 64, "depth": 4, "classifier_hidden": 256},  # reference notebook, configs/brisc_unet.yaml
    16: {"base_channels": 16, "depth": 4, "classifier_hidden": 128},  # configs/quickstart.yaml
}


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _summary(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": statistics.median(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "repeats": len(ms),
    }


def bench_network(base: int, size: int, threads: int, warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = UNet(**NETWORKS.get(base, {"base_channels": base, "depth": 4})).eval()
    x = torch.randn(1, 3, size, size)
    results: dict[str, dict[str, float]] = {}

    def eager() -> object:
        with torch.inference_mode():
            return model(x)

    def eager_bf16() -> object:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    results["torch fp32"] = _summary(time_calls(eager, warmup, repeats))
    results["torch bf16 autocast"] = _summary(time_calls(eager_bf16, warmup, repeats))

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {ONNX_INPUT: x.numpy()}
        # Same numbers as eager fp32 (sanity check that the timed graph is the network).
        diff = float(np.abs(session.run(None, feed)[1] - eager().class_logits.numpy()).max())
        results["onnxruntime fp32"] = {**_summary(time_calls(lambda: session.run(None, feed), warmup, repeats))}
        results["onnxruntime fp32"]["class_logit_max_abs_diff"] = diff
    results["_params"] = {"millions": sum(p.numel() for p in model.parameters()) / 1e6}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base_channels", type=int, nargs="+", default=[64, 16])
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and ORT intra-op threads")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    info = {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "size": args.size,
        "load_before": _load(),
    }
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    results = {}
    for base in args.base_channels:
        results[base] = bench_network(base, args.size, args.threads, args.warmup, args.repeats)
    info["load_after"] = _load()

    print(json.dumps({"info": info, "results": results}, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=2))
    if args.markdown:
        print()
        print("| network | params | backend | median ms / image | min | max |")
        print("|---|---|---|---|---|---|")
        for base, per_backend in results.items():
            params = per_backend["_params"]["millions"]
            for backend, r in per_backend.items():
                if backend.startswith("_"):
                    continue
                print(
                    f"| base {base} | {params:.1f} M | {backend} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                    f"{r['max_ms']:.1f} |"
                )


if __name__ == "__main__":
    main()
