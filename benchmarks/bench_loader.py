"""Training-loader throughput (images/s) of BrainTumorDataModule, with and without the image cache.

Counts the images of both training streams (segmentation + classification) delivered per second over whole
epochs after the first (workers already started, cache already filled), with no model: this is the ceiling the
loader puts on training speed.

    python benchmarks/bench_loader.py                       # synthetic 500/100 set, upscaled to 512x512 JPEGs
    python benchmarks/bench_loader.py --source-size native  # the synthetic images as generated (mostly 256 px)
    python benchmarks/bench_loader.py --root /path/to/brisc2025 --epochs 1

The default copies the synthetic set with every image resized to 512x512, because real BRISC is mostly
512x512 JPEGs (4,881 of 6,000) and JPEG decoding dominates the uncached cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from common import upscale_copy

from brain_mtl.data import BrainTumorDataModule, default_num_workers
from brain_mtl.data.synthetic import generate_synthetic_dataset


def measure(root: Path, cache: bool, args: argparse.Namespace) -> dict:
    dm = BrainTumorDataModule(
        root=str(root),
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cache_images=cache,
        keep_aspect=args.keep_aspect,
    )
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    loader = dm.train_dataloader()
    rates = []
    for epoch in range(args.epochs + 1):
        images = 0
        start = time.perf_counter()
        for batch, _, _ in loader:
            images += len(batch["seg"]["path"]) + len(batch["cls"]["path"])
        elapsed = time.perf_counter() - start
        if epoch > 0:  # epoch 0 starts the workers
            rates.append(images / elapsed)
    return {
        "cache_images": cache,
        "setup_s": round(setup_s, 2),
        "images_per_epoch": images,
        "images_per_s": round(sum(rates) / len(rates), 1),
        "per_epoch": [round(r, 1) for r in rates],
        "cache_mb": round(dm.cache.nbytes / 1e6, 1) if dm.cache else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="dataset root (default: generate the synthetic set in a temporary folder)")
    parser.add_argument(
        "--source-size",
        default="512",
        help="'native' or a side in px to upscale the synthetic images to (default 512, BRISC's usual size)",
    )
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=None, help=f"default: {default_num_workers()} here")
    parser.add_argument("--keep-aspect", action="store_true")
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs (after one warm-up epoch)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.root:
            root = Path(args.root)
            generation = None
        else:
            start = time.perf_counter()
            generate_synthetic_dataset(Path(tmp) / "native", 500, 100, seed=42)
            generation = round(time.perf_counter() - start, 1)
            root = Path(tmp) / "native"
            if args.source_size != "native":
                root = Path(tmp) / f"up{args.source_size}"
                upscale_copy(Path(tmp) / "native", root, int(args.source_size))
        results = [measure(root, cache, args) for cache in (False, True)]
    settings = {
        "root": args.root or f"synthetic 500/100, source images {args.source_size}",
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers if args.num_workers is not None else default_num_workers(),
        "keep_aspect": args.keep_aspect,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "synthetic_generation_s": generation,
    }
    print(json.dumps({"settings": settings, "results": results}, indent=2))
    print("\n| cache_images | train loader images/s | setup s (index + cache fill) | cache MB |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['cache_images']} | {r['images_per_s']} | {r['setup_s']} | {r['cache_mb']} |")


if __name__ == "__main__":
    main()
