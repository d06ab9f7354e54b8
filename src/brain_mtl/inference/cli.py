"""``python -m brain_mtl predict-images``: predict files and folders, write masks, overlays and tables."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from brain_mtl.inference.outputs import OutputWriter, previous_run_files
from brain_mtl.inference.predictor import Failure, Predictor
from brain_mtl.inference.tta import TTA_MODES, output_stride_of

__all__ = ["collect_inputs", "predict_images_main"]


def collect_inputs(
    inputs: Sequence[str | os.PathLike],
    recursive: bool = False,
    exclude: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Expand files and folders into a list of files, in a stable order.

    Folders contribute their files with an image extension (see ``brain_mtl.data.io.IMAGE_EXTENSIONS``),
    sorted; ``recursive`` descends into sub-folders. Files named explicitly are kept whatever their extension
    (so that a mis-named or broken file is reported rather than silently dropped); missing paths are kept too and
    fail when read.

    Args:
        inputs: files and folders.
        recursive: descend into sub-folders.
        exclude: folders left out of the listing of any input folder they lie in, with everything below them
            (``predict-images`` passes its output folder, so that it never reads its own masks when the output is
            an input folder or lies inside one).
    """
    from brain_mtl.data.io import IMAGE_EXTENSIONS

    excluded = [Path(folder).resolve() for folder in exclude]

    def listing(folder: Path) -> list[Path]:
        inside = [e for e in excluded if e.is_relative_to(folder.resolve())]
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(
            p
            for p in candidates
            if p.is_file()
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(p.resolve().is_relative_to(e) for e in inside)
        )

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(listing(path))
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for path in files:
        key = path.resolve() if path.exists() else path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brain_mtl predict-images",
        description="Predict tumour masks and classes for image files or folders. Writes <stem>_mask.png (original "
        "size), <stem>_overlay.png, optionally <stem>_gradcam.png, and predictions.csv / predictions.json into "
        "OUT. Unreadable files are listed (stderr and predictions.json) and skipped; the exit status is 1 when "
        "any file failed. OUT must be new or empty unless --overwrite is given; its files are never read as "
        "inputs.",
    )
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint (.ckpt) or state-dict file")
    parser.add_argument("--input", required=True, nargs="+", help="image files and/or folders of images")
    parser.add_argument("--output", required=True, help="output folder (created; must be empty, see --overwrite)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that already holds files: the files a previous predict-images run "
        "listed in its predictions.json are removed first, other files are left (and counted)",
    )
    parser.add_argument("--gradcam", action="store_true", help="also write Grad-CAM heat-map overlays")
    parser.add_argument(
        "--gradcam_class",
        default=None,
        help="class that Grad-CAM explains (name or index); default: each image's predicted class",
    )
    parser.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation: none (default); flip (the image and its horizontal mirror; also what a bare "
        "--tta means); d4 (the 8 flips, 90-degree rotations and transposes, 8x the cost). Each view's mask is "
        "mapped back onto the image, then mask and class probabilities are averaged",
    )
    parser.add_argument("--mask_gate", action="store_true", help="empty the mask when the class is no_tumor")
    parser.add_argument("--threshold", type=float, default=None, help="mask probability threshold")
    parser.add_argument("--image_size", type=int, default=None, help="network input side (default: the training size)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--recursive", action="store_true", help="also read images in sub-folders")
    parser.add_argument("--no_overlay", action="store_true", help="write masks and tables only")
    return parser


def predict_images_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl predict-images``: see ``--help``.

    Returns:
        0 when every input was predicted, 1 when any failed (they are named on stderr and in
        ``predictions.json``), 2 on a usage error: no input found, a checkpoint that cannot be loaded, an output
        path that is a file, or an output folder that is not empty without ``--overwrite``.
    """
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        print(f"error: --output {output} is an existing file, not a folder; choose a folder", file=sys.stderr)
        return 2
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        print(
            f"error: output folder {output} is not empty; pass --overwrite to replace its results, "
            "or choose another folder",
            file=sys.stderr,
        )
        return 2
    if args.threshold is not None and not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        print(f"error: --threshold must be a probability in [0, 1], got {args.threshold}", file=sys.stderr)
        return 2
    files = collect_inputs(args.input, recursive=args.recursive, exclude=[output])
    if not files:
        print(
            f"error: no image files found in {args.input} (files under the output folder {output} are never read)"
            if _lies_within(output, args.input)
            else f"error: no image files found in {args.input}",
            file=sys.stderr,
        )
        return 2
    if _lies_within(output, args.input):
        print(f"note: files under the output folder {output} are not read as inputs", file=sys.stderr)
    try:
        predictor = Predictor.from_checkpoint(
            args.ckpt_path,
            device=args.device,
            image_size=args.image_size,
            mask_threshold=args.threshold,
            tta=args.tta,
            mask_gate=args.mask_gate,
            precision=args.precision,
            batch_size=args.batch_size,
        )
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        # A missing or foreign file, or weights that do not fit the network: no traceback, exit status 2.
        print(f"error: cannot load {args.ckpt_path}: {error}", file=sys.stderr)
        return 2
    stride = output_stride_of(predictor.model)
    if stride is not None and predictor.preprocessing.image_size % stride:
        size = predictor.preprocessing.image_size
        print(
            f"error: image size {size} is not a multiple of the network's output stride {stride}; pass --image_size "
            f"{max(stride, size // stride * stride)} or {(size // stride + 1) * stride}",
            file=sys.stderr,
        )
        return 2
    target: int | str | None = args.gradcam_class
    if isinstance(target, str) and target.isdigit():
        target = int(target)
    try:
        predictor.class_index(target)
    except ValueError as error:
        print(f"error: --gradcam_class: {error}", file=sys.stderr)
        return 2
    settings = {
        "checkpoint": str(args.ckpt_path),
        "image_size": predictor.preprocessing.image_size,
        "keep_aspect": predictor.preprocessing.keep_aspect,
        "mask_threshold": predictor.mask_threshold,
        "tta": predictor.tta,
        "mask_gate": predictor.mask_gate,
        "precision": predictor.precision,
    }
    try:
        if args.overwrite and output.is_dir():
            _remove_previous_run(output)
        out = OutputWriter(output, predictor.class_names, overlays=not args.no_overlay, settings=settings)
    except OSError as error:
        print(f"error: cannot write to the output folder {output}: {error}", file=sys.stderr)
        return 2
    with out:
        results = predictor.iter_predict(files, gradcam=args.gradcam, target_class=target, errors="skip")
        for result in results:
            if isinstance(result, Failure):
                out.fail(result.source, result.error)
                detail = result.error if result.source in result.error else f"{result.source}: {result.error}"
                print(f"skipped: {detail}", file=sys.stderr)
            else:
                out.write(result)
    print(f"wrote {len(out.rows)} predictions to {out.output_dir} ({out.csv_path.name}, {out.json_path.name})")
    if out.failures:
        print(f"{len(out.failures)} of {len(files)} inputs failed: " + ", ".join(f.source for f in out.failures))
        return 1
    return 0


def _lies_within(output: Path, inputs: Sequence[str]) -> bool:
    """Whether the output folder is one of the input folders or inside one."""
    resolved = output.resolve()
    return any(Path(item).is_dir() and resolved.is_relative_to(Path(item).resolve()) for item in inputs)


def _remove_previous_run(output: Path) -> None:
    """``--overwrite``: delete the files the previous run listed in its ``predictions.json``; say what stays."""
    removed = 0
    for path in previous_run_files(output):
        path.unlink()
        removed += 1
    if removed:
        print(f"--overwrite: removed {removed} files of the previous run in {output} (listed in its predictions.json)")
    others = sum(1 for _ in output.iterdir())
    if others:
        print(
            f"note: {output} holds {others} other files or folders, not listed by a previous predict-images run; "
            "they are left as they are (same-named results of this run replace them)",
            file=sys.stderr,
        )
