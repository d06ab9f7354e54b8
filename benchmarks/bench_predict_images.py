"""End-to-end throughput of ``python -m brain_mtl predict-images`` on a folder of scans (files/s).

Writes ``--files`` synthetic scans at ``--side`` x ``--side`` (JPEG, like BRISC), a checkpoint of the quickstart's
network (``configs/quickstart.yaml``: 16 base channels, 128 px; random weights, since speed does not depend on
them), then times the command as a user runs it, process start, reading, resizing, the network, the masks and
overlays written at the original size and the CSV/JSON included:

    python benchmarks/bench_predict_images.py                          # 200 scans at 512x512, batch 16
    python benchmarks/bench_predict_images.py --batch_size 1 --precision bf16
    python benchmarks/bench_predict_images.py --nifti --files 155 --side 240   # one NIfTI volume: slices/s
    python benchmarks/bench_predict_images.py --ckpt_path ensemble.yaml --ckpt_path fold0.ckpt --input scans/

The time of a run on one file is printed too, so that the start-up cost can be told apart from the per-file cost.
With ``--ckpt_path`` (repeatable) and ``--input`` the given checkpoints or ensemble files are timed on those files,
one run each, in the order given.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import lightning
import torch
import yaml
from common import cpu_name

REPO = Path(__file__).resolve().parents[1]


def write_scans(folder: Path, count: int, side: int) -> list[Path]:
    """``count`` synthetic slices, resized to ``side`` px and written as JPEG files."""
    import numpy as np

    from brain_mtl.data.synthetic import synthesize_slice

    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        image, _ = synthesize_slice(np.random.default_rng(i), i % 4, height=side, width=side)
        path = folder / f"scan_{i:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(path)
    return paths


def write_volume(path: Path, slices: int, side: int) -> Path:
    """A NIfTI volume of ``slices`` synthetic axial slices (1 mm in plane, 5 mm apart), float32."""
    import nibabel as nib
    import numpy as np

    from brain_mtl.data.synthetic import synthesize_slice

    stack = [synthesize_slice(np.random.default_rng(i), i % 4, height=side, width=side)[0] for i in range(slices)]
    # Display rows/columns -> RAS voxel axes (x = columns mirrored, y = rows mirrored), as read_nifti shows them.
    volume = np.stack([np.asarray(g, dtype=np.float32)[::-1, ::-1].T for g in stack], axis=-1)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 5.0, 1.0])), str(path))
    return path


def quickstart_checkpoint(path: Path) -> Path:
    from brain_mtl.task.module import BrainTumorModule

    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    module = BrainTumorModule(**config["model"])
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": lightning.__version__,
            "datamodule_hyper_parameters": {"image_size": config["data"]["image_size"], "keep_aspect": False},
        },
        path,
    )
    return path


def run(ckpt: Path, inputs: list[str], out: Path, args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "brain_mtl", "predict-images", "--ckpt_path", str(ckpt), "--input", *inputs]
    command += ["--output", str(out), "--batch_size", str(args.batch_size), "--precision", args.precision]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--precision", default="32", choices=["32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nifti", action="store_true", help="one NIfTI volume of --files slices instead of files")
    parser.add_argument("--ckpt_path", action="append", help="time these checkpoints on --input (repeatable)")
    parser.add_argument("--input", help="folder of scans for --ckpt_path")
    args = parser.parse_args()
    if args.ckpt_path:
        compare_checkpoints(args)
        return
    if args.nifti:
        time_volume(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_scans(tmp / "scans", args.files, args.side)
        ckpt = quickstart_checkpoint(tmp / "quickstart.ckpt")
        one = min(run(ckpt, [str(paths[0])], tmp / f"one_{i}", args) for i in range(args.repeats))
        folder = min(run(ckpt, [str(tmp / "scans")], tmp / f"all_{i}", args) for i in range(args.repeats))
    print(f"{cpu_name()} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(f"predict-images, quickstart network, {args.files} scans of {args.side}x{args.side} JPEG, batch "
          f"{args.batch_size}, precision {args.precision}, best of {args.repeats}:")  # fmt: skip
    print(f"  one file: {one:.2f} s (start-up included)")
    print(f"  folder:   {folder:.2f} s = {args.files / folder:.1f} files/s end to end; "
          f"{(args.files - 1) / max(folder - one, 1e-9):.1f} files/s after start-up")  # fmt: skip


def time_volume(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        volume = write_volume(tmp / "volume.nii.gz", args.files, args.side)
        ckpt = quickstart_checkpoint(tmp / "quickstart.ckpt")
        seconds = min(run(ckpt, [str(volume)], tmp / f"vol_{i}", args) for i in range(args.repeats))
    print(f"{cpu_name()} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(f"predict-images, quickstart network, one NIfTI volume of {args.files} slices of {args.side}x{args.side}, "
          f"batch {args.batch_size}, precision {args.precision}, best of {args.repeats}: {seconds:.2f} s = "
          f"{args.files / seconds:.1f} slices/s end to end (start-up and the .nii.gz mask included)")  # fmt: skip


def compare_checkpoints(args: argparse.Namespace) -> None:
    if not args.input:
        raise SystemExit("--ckpt_path needs --input FOLDER")
    files = sum(1 for p in Path(args.input).iterdir() if p.is_file())
    print(f"{cpu_name()} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, ckpt in enumerate(args.ckpt_path):
            seconds = run(Path(ckpt), [args.input], Path(tmp) / f"out_{i}", args)
            print(f"  {ckpt}: {files} files in {seconds:.2f} s = {files / seconds:.2f} files/s (one run)")


if __name__ == "__main__":
    main()
