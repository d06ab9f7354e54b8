"""The :class:`Predictor`: images of any size in, masks at their original size, classes and Grad-CAM maps out."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.io import read_image
from brain_mtl.inference.checkpoint import load_checkpoint
from brain_mtl.inference.gradcam import GradCAM
from brain_mtl.inference.prediction import Failure, NonFiniteOutputError, Prediction, build_prediction
from brain_mtl.inference.preprocessing import Preprocessing, as_rgb_uint8
from brain_mtl.models.tta import TTAMode, output_stride_of, parse_tta, tta_probs

__all__ = ["ImageInput", "Predictor"]

ImageInput = str | os.PathLike | np.ndarray | tuple[str, np.ndarray]
"""A file, an image array, or ``(name, array)``: an array with the name its results carry (e.g. a DICOM frame)."""
"""A path to an image file, or an image array: ``(H, W)`` gray or ``(H, W, 3|4)`` RGB(A)."""


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Predictor:
    """Segment and classify images of any size with a trained network.

    Args:
        model: the network; ``forward(x)`` returns mask logits ``(B, 1, h, w)`` and class logits ``(B, C)``.
        preprocessing: image size and letterboxing (as in training).
        mask_threshold: probability above which a pixel is tumour.
        class_names: names of the classes, in logit order.
        device: ``auto`` (CUDA when available, else CPU), or a torch device.
        tta: test-time augmentation (:mod:`brain_mtl.models.tta`): ``none``, ``flip`` (the image and its
            horizontal mirror) or ``d4`` (the 8 flips, rotations and transposes); each view's mask is mapped back
            onto the original pixels and the probabilities are averaged. ``True`` means ``flip``, ``False``
            ``none``.
        mask_gate: empty the mask when the most probable class is ``no_tumor`` (the class head vetoes the mask), or
            when it is smaller than ``gate_min_area`` (:mod:`brain_mtl.models.postprocess`).
        gate_min_area: with ``mask_gate``, the smallest mask kept, in pixels of the network's grid (0: class veto
            only).
        precision: ``32`` (float32) or ``bf16`` (bfloat16 autocast).
        batch_size: images per forward pass in :meth:`iter_predict`.

    Example:
        >>> predictor = Predictor.from_checkpoint("last.ckpt")  # doctest: +SKIP
        >>> result = predictor.predict("scan.jpg")  # doctest: +SKIP
        >>> result.class_name, result.probabilities, result.mask.shape  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        preprocessing: Preprocessing | None = None,
        *,
        mask_threshold: float = 0.5,
        class_names: Sequence[str] = CLASS_NAMES,
        device: str | torch.device = "auto",
        tta: bool | TTAMode = "none",
        mask_gate: bool = False,
        gate_min_area: int = 0,
        precision: Literal["32", "bf16"] = "32",
        batch_size: int = 8,
    ) -> None:
        if precision not in ("32", "bf16"):
            raise ValueError(f"precision must be '32' or 'bf16', got {precision!r}")
        mask_threshold = float(mask_threshold)
        if not (math.isfinite(mask_threshold) and 0.0 <= mask_threshold <= 1.0):
            raise ValueError(f"mask_threshold must be a probability in [0, 1], got {mask_threshold!r}")
        self.device = _pick_device(device)
        self.model = model.to(self.device).eval()
        self.preprocessing = preprocessing or Preprocessing()
        self.mask_threshold = float(mask_threshold)
        self.class_names = tuple(class_names)
        self.tta: TTAMode = parse_tta(tta)
        self.mask_gate = bool(mask_gate)
        self.gate_min_area = int(gate_min_area)
        self.precision = precision
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.batch_size = int(batch_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "auto",
        *,
        image_size: int | None = None,
        keep_aspect: bool | None = None,
        mask_threshold: float | None = None,
        model_class: type | None = None,
        weights_only: bool = True,
        **kwargs: Any,
    ) -> Predictor:
        """Build a predictor from a Lightning checkpoint or a state-dict file (see :func:`load_checkpoint`).

        Args:
            path: the checkpoint.
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...
            image_size: override of the training image size (state-dict files: default 256).
            keep_aspect: override of the training letterbox setting.
            mask_threshold: override of the module's mask threshold.
            model_class: LightningModule subclass the checkpoint was written by.
            weights_only: refuse files that would run pickled code (see :func:`load_checkpoint`).
            **kwargs: other :class:`Predictor` arguments (``tta``, ``mask_gate``, ``precision``, ``batch_size``).
        """
        loaded = load_checkpoint(
            path,
            image_size=image_size,
            keep_aspect=keep_aspect,
            mask_threshold=mask_threshold,
            model_class=model_class,
            weights_only=weights_only,
        )
        return cls(
            loaded.model,
            loaded.preprocessing,
            mask_threshold=loaded.mask_threshold,
            class_names=loaded.class_names,
            device=device,
            **kwargs,
        )

    # ------------------------------------------------------------------ public API
    def predict(
        self,
        image_or_path: ImageInput,
        *,
        tta: bool | TTAMode | None = None,
        gradcam: bool = False,
        target_class: int | str | None = None,
    ) -> Prediction:
        """Predict one image.

        Args:
            image_or_path: an image file, or an array ``(H, W)`` gray / ``(H, W, 3|4)`` RGB(A).
            tta: override the predictor's test-time augmentation mode (``none``, ``flip``, ``d4``).
            gradcam: also compute a Grad-CAM map of the classification.
            target_class: the class Grad-CAM explains (index or name); default the predicted class.

        Returns:
            :class:`Prediction` with the mask at the image's original size.

        Raises:
            brain_mtl.data.errors.DatasetError: the file cannot be read (the message names it).
        """
        return self.predict_batch([image_or_path], tta=tta, gradcam=gradcam, target_class=target_class)[0]

    def predict_batch(
        self,
        images_or_paths: Iterable[ImageInput],
        *,
        batch_size: int | None = None,
        tta: bool | TTAMode | None = None,
        gradcam: bool = False,
        target_class: int | str | None = None,
    ) -> list[Prediction]:
        """Predict many images, ``batch_size`` per forward pass; raises on the first unreadable file.

        See :meth:`predict` for the arguments; :meth:`iter_predict` streams results and can skip bad files.
        """
        results = self.iter_predict(
            images_or_paths,
            batch_size=batch_size,
            tta=tta,
            gradcam=gradcam,
            target_class=target_class,
            errors="raise",
        )
        return [r for r in results if isinstance(r, Prediction)]

    def iter_predict(
        self,
        images_or_paths: Iterable[ImageInput],
        *,
        batch_size: int | None = None,
        tta: bool | TTAMode | None = None,
        gradcam: bool = False,
        target_class: int | str | None = None,
        errors: Literal["raise", "skip"] = "raise",
    ) -> Iterator[Prediction | Failure]:
        """Stream predictions in input order, reading and predicting ``batch_size`` images at a time.

        Args:
            images_or_paths: files and/or image arrays.
            batch_size: images per forward pass (default: the predictor's).
            tta: override the predictor's test-time augmentation mode (``none``, ``flip``, ``d4``).
            gradcam: also compute Grad-CAM maps.
            target_class: the class Grad-CAM explains (index or name); default each image's predicted class.
            errors: ``raise`` on an unreadable input or non-finite network outputs
                (:class:`NonFiniteOutputError`), or ``skip``: yield a :class:`Failure` for that input and go on.

        Yields:
            One :class:`Prediction` (or :class:`Failure`) per input.
        """
        size = max(1, int(batch_size or self.batch_size))
        # Failures wait in the queue with the images so that results come out in input order.
        pending: list[tuple[str, np.ndarray] | Failure] = []
        readable = 0
        for index, item in enumerate(images_or_paths):
            source = (
                f"array_{index}"
                if isinstance(item, np.ndarray)
                else str(item[0])
                if isinstance(item, tuple)
                else str(item)
            )
            try:
                pending.append((source, self._read(item)))
                readable += 1
            except (OSError, ValueError) as error:
                if errors == "raise":
                    raise
                pending.append(Failure(source, str(error)))
            if readable == size:
                yield from self._flush(pending, tta, gradcam, target_class, errors)
                pending, readable = [], 0
        yield from self._flush(pending, tta, gradcam, target_class, errors)

    def _flush(
        self,
        pending: list[tuple[str, np.ndarray] | Failure],
        tta: bool | TTAMode | None,
        gradcam: bool,
        target_class: int | str | None,
        errors: Literal["raise", "skip"] = "raise",
    ) -> Iterator[Prediction | Failure]:
        images = [entry for entry in pending if not isinstance(entry, Failure)]
        predictions = iter(self._predict_images(images, tta, gradcam, target_class, errors) if images else [])
        for entry in pending:
            yield entry if isinstance(entry, Failure) else next(predictions)

    @torch.no_grad()
    def forward_probs(self, images: Tensor, tta: bool | TTAMode | None = None) -> tuple[Tensor, Tensor]:
        """Mask and class probabilities of a preprocessed batch.

        Args:
            images: ``(B, 3, h, w)`` network input.
            tta: ``none``, ``flip`` or ``d4`` (default: the predictor's setting); see
                :func:`brain_mtl.models.tta.tta_probs`, which this calls.

        Returns:
            ``mask_probs (B, 1, h, w)`` and ``class_probs (B, C)``, float32 on the predictor's device.

        Raises:
            ValueError: ``d4`` on a batch whose sides are not multiples of the network's ``output_stride``.
        """
        mode = self.tta if tta is None else parse_tta(tta)

        def forward(x: Tensor) -> Any:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                return self.model(x)

        # Probabilities, not logits, are averaged (in float32); each view's mask goes back onto the original pixels.
        return tta_probs(forward, images.to(self.device), mode, output_stride=output_stride_of(self.model))

    def gradcam(self, images: Tensor, target_class: int | Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
        """Grad-CAM maps of the classification for a preprocessed batch (see :class:`.gradcam.GradCAM`).

        Returns:
            ``maps (B, h, w)`` in ``[0, 1]`` and the explained class per image ``(B,)``.
        """
        result = GradCAM(self.model)(images.to(self.device), target_class)
        return result.maps, result.class_indices

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _read(item: ImageInput) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return as_rgb_uint8(item)
        if isinstance(item, tuple):
            return as_rgb_uint8(item[1])
        return read_image(item)

    def class_index(self, target_class: int | str | None) -> int | None:
        """A class given by index or name -> its index (None stays None); raises ValueError for an unknown one."""
        if target_class is None or isinstance(target_class, int):
            if isinstance(target_class, int) and not 0 <= target_class < len(self.class_names):
                raise ValueError(f"target_class {target_class} is not in [0, {len(self.class_names)})")
            return target_class
        if target_class not in self.class_names:
            raise ValueError(f"target_class {target_class!r} is not one of {list(self.class_names)}")
        return self.class_names.index(target_class)

    def _predict_images(
        self,
        items: list[tuple[str, np.ndarray]],
        tta: bool | TTAMode | None,
        gradcam: bool,
        target_class: int | str | None,
        errors: Literal["raise", "skip"] = "raise",
    ) -> list[Prediction | Failure]:
        batch = torch.stack([self.preprocessing(image) for _, image in items])
        mask_probs, class_probs = self.forward_probs(batch, tta)
        cams = cam_classes = None
        if gradcam:
            # By default explain the class the prediction reports (after TTA / bf16), not a fresh argmax.
            target = self.class_index(target_class)
            cams, cam_classes = self.gradcam(batch, class_probs.argmax(1).tolist() if target is None else target)
        results: list[Prediction | Failure] = []
        for i, (source, image) in enumerate(items):
            try:
                result: Prediction | Failure = self.make_prediction(
                    source,
                    image,
                    mask_probs[i, 0],
                    class_probs[i],
                    gradcam=None if cams is None else cams[i],
                    gradcam_class=None if cam_classes is None else int(cam_classes[i]),
                )
            except NonFiniteOutputError as error:
                if errors == "raise":
                    raise
                result = Failure(source, str(error))
            results.append(result)
        return results

    def make_prediction(
        self,
        source: str,
        image: np.ndarray,
        mask_probs: Tensor | np.ndarray,
        class_probs: Tensor | np.ndarray,
        *,
        gradcam: Tensor | np.ndarray | None = None,
        gradcam_class: int | None = None,
    ) -> Prediction:
        """Turn network-resolution outputs for one image into a :class:`Prediction` at the image's size.

        Args:
            source: name of the input.
            image: ``(H, W, 3)`` uint8 RGB original.
            mask_probs: ``(h, w)`` (or ``(1, h, w)``) tumour probabilities at network resolution.
            class_probs: ``(C,)`` class probabilities.
            gradcam: ``(h, w)`` Grad-CAM map at network resolution, or None.
            gradcam_class: the class the map explains.

        Raises:
            NonFiniteOutputError: the class probabilities, mask probabilities or Grad-CAM map hold NaN or infinity.
        """
        return build_prediction(
            source,
            image,
            mask_probs,
            class_probs,
            preprocessing=self.preprocessing,
            mask_threshold=self.mask_threshold,
            class_names=self.class_names,
            mask_gate=self.mask_gate,
            gate_min_area=self.gate_min_area,
            gradcam=gradcam,
            gradcam_class=gradcam_class,
        )
