"""Per-image records of an evaluated split: what the test step measured on each image, gathered for the report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.evaluation.metrics import ImageStats, image_stats

__all__ = ["ImageRecords"]


def _empty(dtype: type, *shape: int) -> np.ndarray:
    return np.zeros((0, *shape), dtype=dtype)


@dataclass
class ImageRecords:
    """A few numbers per evaluated image (N images, C classes); no masks are kept.

    Built batch by batch from the :class:`~brain_mtl.metrics.ImageStats` that
    :meth:`BrainTumorModule.test_step <brain_mtl.task.module.BrainTumorModule.test_step>` returns (the
    :class:`~brain_mtl.callbacks.EvaluationReport` callback does it), or from full masks with :meth:`from_masks`.

    Attributes:
        paths: N image paths.
        labels: (N,) true class indices.
        probs: (N, C) class probabilities.
        has_mask: (N,) whether the ground-truth mask is known (tumour image with a mask, or a no-tumour image).
        heights: (N,) height of the evaluated grid.
        widths: (N,) width of the evaluated grid.
        truth_area: (N,) ground-truth mask pixels (0 where the mask is unknown).
        pred_area: (N,) predicted mask pixels.
        counts: (N, 4) tp, fp, fn, tn of the prediction against the truth (meaningless where ``has_mask`` is False).
        hd95: (N,) HD95 in pixels (NaN where undefined or the mask is unknown).
    """

    paths: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    probs: np.ndarray = field(default_factory=lambda: _empty(np.float64, len(CLASS_NAMES)))
    has_mask: np.ndarray = field(default_factory=lambda: _empty(bool))
    heights: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    widths: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    truth_area: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    pred_area: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    counts: np.ndarray = field(default_factory=lambda: _empty(np.int64, 4))
    hd95: np.ndarray = field(default_factory=lambda: _empty(np.float64))

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, paths: Sequence[str], labels: Sequence[int], has_mask: Sequence[bool], stats: ImageStats) -> None:
        """Append one batch: its paths, true labels, mask flags and the step's per-image statistics."""
        n = len(paths)
        if not (len(labels) == len(has_mask) == len(stats.counts) == n):
            raise ValueError("paths, labels, has_mask and the statistics must describe the same images")
        if n == 0:
            return
        probs = np.asarray(stats.class_probs, dtype=np.float64)
        self.paths.extend(str(p) for p in paths)
        self.labels = np.concatenate([self.labels, np.asarray(labels, dtype=np.int64).reshape(-1)])
        self.probs = np.concatenate([self.probs.reshape(-1, probs.shape[1]), probs])
        self.has_mask = np.concatenate([self.has_mask, np.asarray(has_mask, dtype=bool).reshape(-1)])
        for name, values, dtype in (
            ("heights", stats.height, np.int64),
            ("widths", stats.width, np.int64),
            ("truth_area", stats.truth_area, np.int64),
            ("pred_area", stats.pred_area, np.int64),
            ("hd95", stats.hd95, np.float64),
        ):
            setattr(self, name, np.concatenate([getattr(self, name), np.asarray(values, dtype=dtype).reshape(-1)]))
        self.counts = np.concatenate([self.counts, np.asarray(stats.counts, dtype=np.int64).reshape(-1, 4)])

    def extend(self, other: ImageRecords) -> None:
        """Append another set of records (e.g. gathered from another process)."""
        stats = ImageStats(
            torch.as_tensor(other.probs),
            torch.as_tensor(other.counts),
            torch.as_tensor(other.truth_area),
            torch.as_tensor(other.pred_area),
            torch.as_tensor(other.hd95),
            torch.as_tensor(other.heights),
            torch.as_tensor(other.widths),
        )
        self.add(other.paths, other.labels, other.has_mask, stats)

    def unique(self) -> ImageRecords:
        """The records with each path once (the first): a distributed sampler repeats images to even the shards."""
        _, first = np.unique(np.asarray(self.paths, dtype=object), return_index=True)
        keep = np.sort(first)
        out = ImageRecords()
        out.paths = [self.paths[i] for i in keep]
        for name in ("labels", "probs", "has_mask", "heights", "widths", "truth_area", "pred_area", "counts", "hd95"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    @classmethod
    def from_masks(
        cls,
        paths: Sequence[str],
        labels: Sequence[int],
        probs: np.ndarray,
        pred_masks: Iterable[np.ndarray],
        truth_masks: Iterable[np.ndarray],
        has_mask: Sequence[bool],
    ) -> ImageRecords:
        """Records from full binary masks of one grid size (the same statistics as the test step computes).

        Args:
            paths: N image paths.
            labels: N true class indices.
            probs: (N, C) class probabilities.
            pred_masks: N binary (H, W) predicted masks.
            truth_masks: N binary (H, W) ground-truth masks (anything, e.g. zeros, where ``has_mask`` is False).
            has_mask: N flags: is the ground truth known.
        """
        records = cls()
        pred = torch.as_tensor(np.stack([np.asarray(m) > 0 for m in pred_masks]), dtype=torch.float32)
        truth = torch.as_tensor(np.stack([np.asarray(m) > 0 for m in truth_masks]), dtype=torch.float32)
        known = torch.as_tensor(np.asarray(has_mask, dtype=bool))
        stats = image_stats(pred[:, None], torch.as_tensor(np.asarray(probs)), truth[:, None], known, threshold=0.5)
        records.add(list(paths), list(labels), list(known.numpy()), stats)
        return records
