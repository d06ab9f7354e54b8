"""The drawn slices: deterministic per seed, tumour classes told apart by place, healthy heads without masks."""

from __future__ import annotations

import cv2
import numpy as np

from brain_mtl.data.synthetic import synthesize_slice

GLIOMA, MENINGIOMA, PITUITARY, NO_TUMOR = range(4)


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def _head(image: np.ndarray) -> np.ndarray:
    """The head region: everything brighter than the air, holes filled."""
    head = (cv2.GaussianBlur(image, (0, 0), 2) > 25).astype(np.uint8)
    contours, _ = cv2.findContours(head, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(head)
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 1, -1)
    return filled


def test_slices_are_deterministic_per_seed() -> None:
    a = synthesize_slice(np.random.default_rng(5), GLIOMA, "co", 96, 80)
    b = synthesize_slice(np.random.default_rng(5), GLIOMA, "co", 96, 80)
    c = synthesize_slice(np.random.default_rng(6), GLIOMA, "co", 96, 80)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (96, 80) and a[0].dtype == np.uint8 and a[1].dtype == bool


def test_classes_differ_by_place() -> None:
    """Meningioma against the skull, glioma inside a hemisphere, pituitary in the midline."""
    size = 128
    stats: dict[int, list[tuple[float, float, float]]] = {GLIOMA: [], MENINGIOMA: [], PITUITARY: []}
    for label in stats:
        for i in range(12):
            view = ("ax", "co", "sa")[i % 3]
            image, mask = synthesize_slice(np.random.default_rng([label, i]), label, view, size, size)
            assert mask.any()
            head = _head(image)
            depth = cv2.distanceTransform(head, cv2.DIST_L2, 5)
            cx, _ = _centroid(mask)
            head_cx, _ = _centroid(head)
            # Distance of the tumour's outermost pixel to the outside of the head.
            stats[label].append((float(depth[mask].min()), abs(cx - head_cx) / size, float(mask.mean())))
    min_depth = {k: np.median([s[0] for s in v]) for k, v in stats.items()}
    off_midline = {k: np.median([s[1] for s in v]) for k, v in stats.items()}
    assert min_depth[MENINGIOMA] < min_depth[GLIOMA]  # meningiomas reach the skull, gliomas stay inside
    assert min_depth[MENINGIOMA] < 0.12 * size
    assert off_midline[PITUITARY] < 0.02  # pituitary tumours sit on the midline
    assert off_midline[GLIOMA] > 0.05 and off_midline[MENINGIOMA] > 0.05
    areas = [s[2] for v in stats.values() for s in v]
    assert np.median(areas) > 0.008  # visible at ~128 px: median tumour area around 1-3% of the image
    assert np.mean(np.array(areas) < 0.003) < 0.1


def test_no_tumour_slices_have_no_mask_but_look_like_heads() -> None:
    image, mask = synthesize_slice(np.random.default_rng(0), NO_TUMOR, "ax", 128, 128)
    assert not mask.any()
    head = _head(image)
    assert 0.3 < head.mean() < 0.9  # a head in the middle, air around it
    assert image[head == 0].mean() < 15
