"""Helpers of the data tests: small image/mask writers and a builder of hand-made BRISC-layout folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

N_TRAIN, N_TEST = 40, 12


def write_image(path: Path, height: int = 32, width: int = 32, seed: int = 0, channels: int = 1) -> Path:
    """Write a small random JPEG (or PNG, from the suffix) and return its path."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if channels == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def write_mask(path: Path, height: int = 32, width: int = 32, empty: bool = False) -> Path:
    """Write a 0/255 PNG mask with a square tumour (or none)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    if not empty:
        mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)
    return path


class TreeBuilder:
    """Builds a minimal valid BRISC-layout folder; tests then break one thing in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counter = 0

    def cls(self, split: str, folder: str, code: str, view: str = "ax", **kwargs) -> Path:
        self.counter += 1
        name = f"brisc2025_{split}_{self.counter:05d}_{code}_{view}_t1.jpg"
        return write_image(self.root / "classification_task" / split / folder / name, seed=self.counter, **kwargs)

    def pair(
        self,
        split: str,
        folder: str,
        code: str,
        view: str = "ax",
        mask_size: tuple[int, int] | None = None,
        empty: bool = False,
    ) -> tuple[Path, Path, Path]:
        """A classification image plus its byte-identical segmentation copy and mask."""
        cls_path = self.cls(split, folder, code, view)
        seg_path = self.root / "segmentation_task" / split / "images" / cls_path.name
        seg_path.parent.mkdir(parents=True, exist_ok=True)
        seg_path.write_bytes(cls_path.read_bytes())
        h, w = mask_size or (32, 32)
        mask_path = write_mask(
            self.root / "segmentation_task" / split / "masks" / (cls_path.stem + ".png"), h, w, empty=empty
        )
        return cls_path, seg_path, mask_path

    def valid(self, per_class: int = 3, splits: tuple[str, ...] = ("train", "test")) -> TreeBuilder:
        for split in splits:
            for folder, code in (("glioma", "gl"), ("meningioma", "me"), ("pituitary", "pi")):
                for _ in range(per_class):
                    self.pair(split, folder, code)
            for _ in range(per_class):
                self.cls(split, "no_tumor", "no")
        return self
