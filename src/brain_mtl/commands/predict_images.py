"""``python -m brain_mtl predict-images``: predict files and folders, write masks, overlays and tables."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from jsonargparse.typing import PositiveInt

from brain_mtl.commands.base import UsageError, checkpoint_errors, run_command
from brain_mtl.data.clinical import ClinicalSlice, NiftiVolume, clinical_kind, read_dicom, read_nifti, write_nifti_mask
from brain_mtl.errors import WriteError
from brain_mtl.inference.inputs import collect_inputs, lies_within
from brain_mtl.inference.outputs import OutputFolderError, OutputWriter, check_output_dir, clear_previous_run
from brain_mtl.inference.prediction import Failure, Prediction
from brain_mtl.inference.predictor import Predictor
from brain_mtl.models.tta import output_stride_of

__all__ = ["predict_images", "predict_images_main"]


def predict_images(
    ckpt_path: str,
    input: list[str],
    output: str,
    overwrite: bool = False,
    gradcam: bool = False,
    gradcam_class: str | None = None,
    tta: Literal["none", "flip", "d4"] = "none",
    mask_gate: bool = False,
    threshold: float | None = None,
    image_size: PositiveInt | None = None,
    batch_size: PositiveInt = 8,
    device: str = "auto",
    precision: Literal["32", "bf16"] = "32",
    recursive: bool = False,
    overlay: bool = True,
) -> int:
    """Predict tumour masks and classes for image files or folders, DICOM files and NIfTI volumes.

    Writes <stem>_mask.png (original size), <stem>_overlay.png, optionally <stem>_gradcam.png, and
    predictions.csv / predictions.json into OUTPUT. A DICOM file is one image per frame (its SOP Instance UID in
    the tables); a NIfTI volume (.nii, .nii.gz) is one row per slice (column slice) and one <name>_mask.nii.gz with
    the volume's shape and affine (needs pip install 'brain_mtl[clinical]'). Unreadable files are listed (stderr and
    predictions.json) and skipped; the exit status is 1 when any file failed or the checkpoint cannot be loaded, 2
    on a usage error. Other files in an input folder are counted and named, not read. OUTPUT must be new or empty
    unless --overwrite is given; its files are never read as inputs.

    Args:
        ckpt_path: Lightning checkpoint (.ckpt), state-dict file, or an ensemble file (.yaml, as
            ``python -m brain_mtl cv`` writes it: the members' averaged probabilities).
        input: image, DICOM or NIfTI files and/or folders of them.
        output: output folder (created; must be empty, see --overwrite).
        overwrite: write into an output folder that already holds files: the files a previous predict-images run
            listed in its predictions.json are removed first, other files are left (and counted).
        gradcam: also write Grad-CAM heat-map overlays.
        gradcam_class: class that Grad-CAM explains (name or index); default: each image's predicted class.
        tta: test-time augmentation: none; flip (the image and its horizontal mirror; also what a bare --tta
            means); d4 (the 8 flips, 90-degree rotations and transposes, 8x the cost). Each view's mask is mapped
            back onto the image, then mask and class probabilities are averaged.
        mask_gate: empty the mask when the class is no_tumor.
        threshold: mask probability threshold (default: the checkpoint's).
        image_size: network input side (default: the training size).
        batch_size: images per forward pass.
        device: auto, cpu, cuda, cuda:1, ...
        precision: 32 or bf16.
        recursive: also read images in sub-folders.
        overlay: write overlay images (--no_overlay: masks and tables only).

    Returns:
        0 when every input was predicted, 1 when any failed (they are named on stderr and in
        ``predictions.json``).

    Raises:
        UsageError: no input found, an output path that is a file, an output folder that is not empty without
            ``overwrite``, a threshold outside [0, 1], an image size the network cannot take, or an unknown
            Grad-CAM class (exit status 2).
        brain_mtl.errors.CheckpointError: the checkpoint cannot be loaded (exit status 1).
    """
    image_size = None if image_size is None else int(image_size)
    batch_size = int(batch_size)
    folder = Path(output)
    try:
        check_output_dir(folder, overwrite)
    except OutputFolderError as error:
        raise UsageError(str(error)) from None
    if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise UsageError(f"--threshold must be a probability in [0, 1], got {threshold}")
    not_read: list[Path] = []
    files = collect_inputs(input, recursive=recursive, exclude=[folder], skipped=not_read)
    inside_an_input = lies_within(folder, input)
    if not files:
        never_read = f" (files under the output folder {folder} are never read)" if inside_an_input else ""
        raise UsageError(f"no image files found in {input}{never_read}")
    if inside_an_input:
        print(f"note: files under the output folder {folder} are not read as inputs", file=sys.stderr)
    with checkpoint_errors(ckpt_path):
        predictor = Predictor.from_checkpoint(
            ckpt_path,
            device=device,
            image_size=image_size,
            mask_threshold=threshold,
            tta=tta,
            mask_gate=mask_gate,
            precision=precision,
            batch_size=batch_size,
        )
    stride = output_stride_of(predictor.model)
    size = predictor.preprocessing.image_size
    if stride is not None and size % stride:
        raise UsageError(
            f"image size {size} is not a multiple of the network's output stride {stride}; pass --image_size "
            f"{max(stride, size // stride * stride)} or {(size // stride + 1) * stride}"
        )
    target: int | str | None = int(gradcam_class) if gradcam_class and gradcam_class.isdigit() else gradcam_class
    try:
        predictor.class_index(target)
    except ValueError as error:
        raise UsageError(f"--gradcam_class: {error}") from None
    settings = {
        "checkpoint": str(ckpt_path),
        "image_size": size,
        "keep_aspect": predictor.preprocessing.keep_aspect,
        "mask_threshold": predictor.mask_threshold,
        "tta": predictor.tta,
        "mask_gate": predictor.mask_gate,
        "precision": predictor.precision,
    }
    try:
        if overwrite:
            _clear_previous_run(folder)
        out = OutputWriter(folder, predictor.class_names, overlays=overlay, settings=settings)
    except OSError as error:
        raise UsageError(f"cannot write to the output folder {folder}: {error}") from None
    clinical = _ClinicalInputs(out)
    with out:
        out.not_read = [str(path) for path in not_read]
        items = clinical.expand(files)
        for result in predictor.iter_predict(items, gradcam=gradcam, target_class=target, errors="skip"):
            if isinstance(result, Failure):
                _fail(out, result)
            clinical.record(result)
    print(f"wrote {len(out.rows)} predictions to {out.output_dir} ({out.csv_path.name}, {out.json_path.name})")
    for path in clinical.volume_masks:
        print(f"wrote {path}")
    if not_read:
        names = ", ".join(str(path) for path in not_read[:10]) + (", ..." if len(not_read) > 10 else "")
        print(f"not read: {len(not_read)} files in the input folders are not images, DICOM or NIfTI: {names}")
    if out.failures:
        print(f"{len(out.failures)} of {len(files)} inputs failed: " + ", ".join(f.source for f in out.failures))
        return 1
    return 0


def _fail(out: OutputWriter, failure: Failure) -> None:
    out.fail(failure.source, failure.error)
    detail = failure.error if failure.source in failure.error else f"{failure.source}: {failure.error}"
    print(f"skipped: {detail}", file=sys.stderr)


@dataclass
class _Volume:
    volume: NiftiVolume
    mask_path: Path
    masks: dict[int, np.ndarray] = field(default_factory=dict)


class _ClinicalInputs:
    """Clinical files as the predictor's ``(name, image)`` items, and their results back into rows and volumes."""

    def __init__(self, out: OutputWriter) -> None:
        self.out = out
        self.slices: dict[str, tuple[ClinicalSlice, _Volume | None]] = {}
        self.volume_masks: list[Path] = []

    def expand(self, files: Sequence[Path]) -> Iterator[Path | tuple[str, np.ndarray]]:
        """Each file as it is, a DICOM file as its frames, a NIfTI volume as its slices (read when reached)."""
        for path in files:
            kind = clinical_kind(path) if path.is_file() else None
            if kind is None:
                yield path
                continue
            try:
                volume = read_nifti(path) if kind == "nifti" else None
                slices = volume.slices if volume is not None else read_dicom(path)
            except ValueError as error:
                _fail(self.out, Failure(str(path), str(error)))
                continue
            entry = None if volume is None else _Volume(volume, self.out.volume_mask_path(path.name))
            for item in slices:
                self.slices[item.source] = (item, entry)
                yield item.source, item.image

    def record(self, result: Prediction | Failure) -> None:
        """Write a prediction's row (and files); a volume's mask file once its last slice is in."""
        item, entry = self.slices.pop(result.source, (None, None))
        if isinstance(result, Failure):
            if entry is not None and item is not None:  # the volume's mask keeps this slice empty
                entry.masks[item.index] = np.zeros(item.image.shape[:2], dtype=np.uint8)
                self._finish(entry)
            return
        if item is None:
            self.out.write(result)
            return
        mask_name = entry.mask_path.name if entry is not None else None
        self.out.write(result, slice_index=item.index, sop_instance_uid=item.sop_instance_uid, volume_mask=mask_name)
        if entry is not None:
            entry.masks[item.index] = result.mask
            self._finish(entry)

    def _finish(self, entry: _Volume) -> None:
        if len(entry.masks) < len(entry.volume.slices):
            return
        masks = [entry.masks[item.index] for item in entry.volume.slices]
        try:
            write_nifti_mask(entry.volume, masks, entry.mask_path)
        except (OSError, WriteError) as error:
            _fail(self.out, Failure(str(entry.volume.path), f"cannot write {entry.mask_path}: {error}"))
            return
        self.out.add_file(entry.mask_path)
        self.volume_masks.append(entry.mask_path)


def _clear_previous_run(folder: Path) -> None:
    """``--overwrite``: delete the files the previous run listed in its ``predictions.json``; say what stays."""
    removed, others = clear_previous_run(folder)
    if removed:
        print(f"--overwrite: removed {removed} files of the previous run in {folder} (listed in its predictions.json)")
    if others:
        print(
            f"note: {folder} holds {others} other files or folders, not listed by a previous predict-images run; "
            "they are left as they are (same-named results of this run replace them)",
            file=sys.stderr,
        )


def predict_images_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl predict-images``: :func:`predict_images` from the command line.

    Args:
        argv: arguments without the program and command names (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    # A bare --tta means flip, the cheap and usual choice.
    return run_command(
        predict_images, argv, "brain_mtl predict-images", overrides={"tta": {"nargs": "?", "const": "flip"}}
    )
