"""The synthetic slice: a healthy head (:mod:`brain_mtl.data.synthetic.anatomy`), a tumour, scanner effects.

The tumour classes differ the way real ones do, by place and shape more than by brightness:

* meningioma: outside the brain tissue, against the inner skull (flat on that side), smooth, bright, homogeneous;
* glioma: inside a cerebral hemisphere, irregular and lobulated, heterogeneous (bright rim around a dark necrotic
  core, or mottled), with darker oedema around it that is not part of the mask;
* pituitary: small, round, in the midline at the skull base (sella), often with an upward extension;
* no tumour: none (the normal pituitary gland is still there, small and grey).

Sizes and brightness overlap between classes, so a model has to learn shape and place. :func:`noisy_mask_png`
encodes a mask with BRISC's value noise.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data.layout import VIEWS
from brain_mtl.data.synthetic.anatomy import Slice, blob, draw_anatomy, noise, smoothstep

__all__ = ["noisy_mask_png", "synthesize_slice"]


def _pick(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float] | None:
    candidates = np.flatnonzero(mask)
    if candidates.size == 0:
        return None
    index = int(candidates[rng.integers(candidates.size)])
    return float(index % mask.shape[1]), float(index // mask.shape[1])


def _draw_meningioma(rng: np.random.Generator, s: Slice) -> np.ndarray:
    point = _pick(rng, s.convexity)
    if point is None:  # pragma: no cover - every drawn slice has a convexity
        point = (s.cx, s.cy - 0.8 * s.ry)
    normal = math.atan2((point[1] - s.cy) / s.ry, (point[0] - s.cx) / s.rx)
    radial = rng.uniform(13.0, 29.0) * s.px
    tangential = radial * rng.uniform(1.1, 1.7)
    inset = radial * rng.uniform(0.15, 0.45)
    cx = point[0] - math.cos(normal) * inset
    cy = point[1] - math.sin(normal) * inset
    shape = blob(rng, s.x, s.y, cx, cy, radial, 0.06, 2, stretch=radial / tangential, angle=normal)
    mask = (shape < 1.0) & s.intracranial
    # A thin CSF cleft separates the well-defined tumour from the displaced brain.
    cleft = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(1.5 * s.px)))
    ring = (cleft > 0) & ~mask & s.intracranial
    s.image[ring] = s.image[ring] * 0.45 + 0.13 * 0.55
    brightness = rng.uniform(0.68, 0.92)
    texture = 0.025 * noise(rng, s.image.shape, 3 * s.px)
    edge = smoothstep(1.0, 0.8, shape)
    value = brightness + texture - 0.06 * (1 - edge)
    s.image[mask] = value[mask]
    if rng.random() < 0.35:  # dural tail: enhancing dura tapering along the skull (not part of the mask)
        along = blob(rng, s.x, s.y, cx, cy, tangential * 1.9, 0.02, 1, stretch=9.0, angle=normal + math.pi / 2)
        tail = (along < 1.0) & ~mask & s.intracranial & (s.brain_depth < 1.5 * s.px)
        s.image[tail] = np.maximum(s.image[tail], brightness * 0.8)
    return mask


def _draw_glioma(rng: np.random.Generator, s: Slice) -> np.ndarray:
    radius = rng.uniform(12.0, 30.0) * s.px
    u = np.abs(s.x - s.cx) / s.rx
    allowed = s.cerebrum & (s.brain_depth > 0.75 * radius) & (u > 0.12)
    point = _pick(rng, allowed)
    if point is None:
        radius *= 0.6
        point = _pick(rng, s.cerebrum & (s.brain_depth > 0.6 * radius)) or (s.cx + 0.3 * s.rx, s.cy)
    cx, cy = point
    shape = blob(
        rng,
        s.x,
        s.y,
        cx,
        cy,
        radius,
        rng.uniform(0.12, 0.24),
        5,
        stretch=rng.uniform(0.75, 1.3),
        angle=rng.uniform(0, math.pi),
    )
    shape = shape * (1 + 0.08 * noise(rng, s.image.shape, 4 * s.px))  # ragged margin
    mask = (shape < 1.0) & (s.brain_depth > 0)
    # Oedema: hypointense brain around the tumour (T1), irregular, outside the mask.
    oedema = (shape < rng.uniform(1.35, 1.8)) & ~mask & (s.brain_depth > 0)
    s.image[oedema] *= rng.uniform(0.72, 0.85)
    mottled = noise(rng, s.image.shape, 3.5 * s.px)
    if rng.random() < 0.6:
        # Ring enhancement around a dark necrotic core.
        rim = rng.uniform(0.25, 0.45)
        core = smoothstep(1.0 - rim, 1.0 - rim - 0.15, shape)
        bright, dark = rng.uniform(0.6, 0.88), rng.uniform(0.12, 0.3)
        value = dark * core + bright * (1 - core) + 0.05 * mottled
    else:
        # Heterogeneous mass: mixed dark and bright patches.
        value = rng.uniform(0.38, 0.5) + 0.13 * mottled + 0.2 * (noise(rng, s.image.shape, 6 * s.px) > 0.9)
    s.image[mask] = value[mask]
    return mask


def _draw_pituitary(rng: np.random.Generator, s: Slice) -> np.ndarray:
    radius = rng.uniform(10.0, 19.0) * s.px
    cx = s.sella[0] + rng.uniform(-1.5, 1.5) * s.px
    cy = s.sella[1] - radius * rng.uniform(0.3, 0.6)  # grows up out of the sella
    shape = blob(rng, s.x, s.y, cx, cy, radius, 0.07, 3, stretch=rng.uniform(0.85, 1.15))
    mask = shape < 1.0
    if rng.random() < 0.4:  # suprasellar extension ("snowman")
        top = blob(rng, s.x, s.y, cx, cy - radius * 0.9, radius * rng.uniform(0.55, 0.75), 0.08, 2)
        mask |= top < 1.0
        shape = np.minimum(shape, top)
    brightness = rng.uniform(0.58, 0.86)
    value = brightness + 0.03 * noise(rng, s.image.shape, 3 * s.px) - 0.05 * smoothstep(0.75, 1.0, shape)
    s.image[mask] = value[mask]
    return mask


def synthesize_slice(
    rng: np.random.Generator, label: int, view: str = "ax", height: int = 256, width: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic T1 MRI slice and its tumour mask.

    Args:
        rng: the image's own random generator (determines everything drawn).
        label: class index (see :mod:`brain_mtl.classes`).
        view: ``"ax"``, ``"co"`` or ``"sa"``.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(image, mask)``: ``(H, W)`` uint8 gray image and ``(H, W)`` bool tumour mask (all False for no tumour).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    low_axial = view == "ax" and (label == CLASS_NAMES.index("pituitary") or rng.random() < 0.25)
    s = draw_anatomy(rng, height, width, view, low_axial)
    if label == CLASS_NAMES.index("meningioma"):
        mask = _draw_meningioma(rng, s)
    elif label == CLASS_NAMES.index("glioma"):
        mask = _draw_glioma(rng, s)
    elif label == CLASS_NAMES.index("pituitary"):
        mask = _draw_pituitary(rng, s)
    elif label == NO_TUMOR:
        mask = np.zeros((height, width), dtype=bool)
    else:
        raise ValueError(f"label must be a class index 0-{len(CLASS_NAMES) - 1}, got {label}")

    image = s.image
    # Scanner effects: smooth bias field, partial-volume blur, Rician-like noise, contrast and gamma.
    image = image * (1 + 0.1 * noise(rng, image.shape, 100 * s.px))
    image = cv2.GaussianBlur(image, (0, 0), 0.6 * s.px)
    sigma = rng.uniform(0.012, 0.03)
    noisy = np.sqrt(
        (image + sigma * rng.standard_normal(image.shape, dtype=np.float32)) ** 2
        + (sigma * rng.standard_normal(image.shape, dtype=np.float32)) ** 2
    )
    noisy = np.clip(noisy * rng.uniform(0.95, 1.1), 0, 1) ** rng.uniform(0.85, 1.15)
    return (noisy * 255 + 0.5).astype(np.uint8), mask


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------
def noisy_mask_png(rng: np.random.Generator, mask: np.ndarray) -> bytes:
    """Encode a boolean mask as an 8-bit PNG with BRISC's noise: 0-7 / 248-255, a few values in between.

    Thresholding the result at 127 gives back ``mask`` exactly.
    """
    shape = mask.shape
    values = np.where(mask, 255 - rng.integers(0, 8, shape), rng.integers(0, 8, shape) * (rng.random(shape) < 0.3))
    # JPEG-like ringing at the edge: some boundary pixels take intermediate values on their own side of 127.
    m8 = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    edge_in = mask & (cv2.erode(m8, kernel) == 0)
    edge_out = ~mask & (cv2.dilate(m8, kernel) > 0)
    pick_in = edge_in & (rng.random(shape) < 0.3)
    pick_out = edge_out & (rng.random(shape) < 0.3)
    values = np.where(pick_in, rng.integers(128, 248, shape), values)
    values = np.where(pick_out, rng.integers(8, 128, shape), values)
    ok, encoded = cv2.imencode(".png", values.astype(np.uint8))
    assert ok
    return encoded.tobytes()
