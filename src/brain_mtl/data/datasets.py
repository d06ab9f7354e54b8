"""Map-style datasets returning dict samples, and an in-memory cache of decoded, resized images.

Sample dicts (collated by the default ``collate_fn`` into batches):

* ``"image"``: ``(3, H, W)`` float32, ImageNet-normalised;
* ``"mask"``: ``(1, H, W)`` float32 in ``{0, 1}`` (segmentation and evaluation samples only);
* ``"label"``: long scalar class index;
* ``"path"``: the image file as ``str``;
* ``"orig_size"``: ``LongTensor([H, W])`` of the file on disk;
* ``"has_mask"``: bool, whether the mask is known (evaluation samples only).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from brain_mtl.data.errors import DatasetError
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.transforms import to_tensor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSpec:
    """What a dataset needs to load one sample.

    Attributes:
        image_path: the image file.
        label: class index.
        mask_path: the mask file, or None (then the mask is all zeros: a no-tumour image or an unknown mask).
        mask_known: whether the mask is ground truth (True for a mask file and for no-tumour images).
        key: cache key of the image (its content hash; identical files share one cache entry).
    """

    image_path: Path
    label: int
    mask_path: Path | None = None
    mask_known: bool = True
    key: str = ""


class ImageCache:
    """Decoded images (and masks) after the resize step, kept in this process's memory.

    Filled once in the main process (:meth:`fill`, threaded) before the DataLoader workers start; workers are
    forked and read the same pages without copying them (on platforms that spawn workers, each worker gets a
    copy). A 512x512 JPEG then costs one decode per run instead of one per epoch.

    Args:
        resize: the pipeline's resize step (:func:`brain_mtl.data.transforms.build_resize`).
    """

    def __init__(self, resize: A.Compose) -> None:
        self.resize = resize
        self.images: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.orig_sizes: dict[str, tuple[int, int]] = {}

    @staticmethod
    def image_key(spec: SampleSpec) -> str:
        """Cache key of a spec's image."""
        return spec.key or str(spec.image_path)

    def _load(self, spec: SampleSpec) -> None:
        key = self.image_key(spec)
        if key not in self.images:
            image = read_image(spec.image_path)
            self.orig_sizes[key] = image.shape[:2]
            self.images[key] = self.resize(image=image)["image"]
        if spec.mask_path is not None and str(spec.mask_path) not in self.masks:
            mask = read_mask(spec.mask_path)
            self.masks[str(spec.mask_path)] = self.resize(image=mask, mask=mask)["mask"]

    def fill(self, specs: Sequence[SampleSpec], threads: int | None = None) -> None:
        """Decode and resize every image and mask of ``specs`` not cached yet."""
        start = time.perf_counter()
        todo = [
            s
            for s in specs
            if self.image_key(s) not in self.images or (s.mask_path is not None and str(s.mask_path) not in self.masks)
        ]
        if not todo:
            return
        threads = threads or min(8, os.cpu_count() or 1)
        # Deduplicate by key first so two threads never decode the same file.
        unique = list({(self.image_key(s), s.mask_path): s for s in todo}.values())
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(self._load, unique, chunksize=16))
        else:
            for s in unique:
                self._load(s)
        log.info(
            "image cache: %d images, %d masks, %.1f MB, filled in %.1f s",
            len(self.images),
            len(self.masks),
            self.nbytes / 1e6,
            time.perf_counter() - start,
        )

    def get(self, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]] | None:
        """``(resized image, resized mask or None, original (H, W))``, or None when the image is not cached."""
        key = self.image_key(spec)
        image = self.images.get(key)
        if image is None:
            return None
        mask = None
        if spec.mask_path is not None:
            mask = self.masks.get(str(spec.mask_path))
            if mask is None:
                return None
        return image, mask, self.orig_sizes[key]

    @property
    def nbytes(self) -> int:
        """Memory held by the cached arrays."""
        return sum(a.nbytes for a in self.images.values()) + sum(a.nbytes for a in self.masks.values())


class BrainMRIDataset(Dataset):
    """Images (and masks) of one split, as dict samples.

    Args:
        specs: the samples.
        transform: albumentations pipeline (:func:`brain_mtl.data.transforms.build_transforms`).
        cache: optional :class:`ImageCache` holding the resized images; used when it has the sample.
        random_transform: the pipeline draws random numbers (training augmentation). Each sample then reseeds it
            from torch's random generator, because albumentations keeps its own generator inside the pipeline:
            forked DataLoader workers would all inherit one state and apply identical augmentations, and neither
            ``seed_everything`` nor a checkpoint's saved random states would reach it. Drawn from torch, the
            augmentation differs per worker (torch seeds each worker), repeats under ``seed_everything``, and a
            resumed run continues as an uninterrupted one (with ``num_workers=0``).

    Subclasses choose the sample keys with two class attributes: ``with_mask`` (return ``"mask"``, all zeros where a
    spec has no mask file) and ``with_has_mask`` (also return ``"has_mask"``, for evaluation).
    """

    with_mask: bool = False
    with_has_mask: bool = False

    def __init__(
        self,
        specs: Sequence[SampleSpec],
        transform: A.Compose,
        cache: ImageCache | None = None,
        random_transform: bool = False,
    ) -> None:
        self.specs = list(specs)
        self.random_transform = random_transform
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.specs)

    def _load(self, spec: SampleSpec) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
        if self.cache is not None:
            cached = self.cache.get(spec)
            if cached is not None:
                return cached
        image = read_image(spec.image_path)
        mask = read_mask(spec.mask_path) if (self.with_mask and spec.mask_path is not None) else None
        if mask is not None and mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{spec.mask_path}: image/mask size mismatch ({mask.shape[1]}x{mask.shape[0]} mask "
                f"for a {image.shape[1]}x{image.shape[0]} image). Re-export the mask at the image's "
                "size."
            )
        return image, mask, image.shape[:2]

    def __getitem__(self, idx: int) -> dict:
        spec = self.specs[idx]
        image, mask, orig_size = self._load(spec)
        if self.random_transform:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        sample: dict = {}
        if self.with_mask:
            if mask is None:
                mask = np.zeros(image.shape[:2], dtype=np.uint8)
            out = self.transform(image=image, mask=mask)
            sample["image"] = to_tensor(out["image"])
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"], dtype=np.float32))[None]
        else:
            sample["image"] = to_tensor(self.transform(image=image)["image"])
        sample["label"] = torch.tensor(spec.label, dtype=torch.long)
        sample["path"] = str(spec.image_path)
        sample["orig_size"] = torch.tensor(orig_size, dtype=torch.long)
        if self.with_has_mask:
            sample["has_mask"] = bool(spec.mask_known)
        return sample


class SegmentationDataset(BrainMRIDataset):
    """Images with masks: samples ``{"image", "mask", "label", "path", "orig_size"}``.

    Specs without a mask file get an all-zero mask (no-tumour images fed to the segmentation stream).
    """

    with_mask = True


class ClassificationDataset(BrainMRIDataset):
    """Images with labels only: samples ``{"image", "label", "path", "orig_size"}``."""


class EvaluationDataset(BrainMRIDataset):
    """Every classification image with its mask where known: ``{..., "mask", "has_mask"}``.

    ``has_mask`` is True when the mask is ground truth: a segmentation mask exists, or the image is no-tumour
    (known empty). Tumour images without a mask get zeros and ``has_mask=False``.
    """

    with_mask = True
    with_has_mask = True
