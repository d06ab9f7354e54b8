"""A generator of synthetic T1-weighted brain MRI slices in the BRISC 2025 folder layout.

The project can never download BRISC (it is on Kaggle), so tests, the quickstart and the documentation run on
data this module draws. It reproduces the real data's quirks that the loading code must survive (see
``docs/data.md``): several image sizes including non-square ones, JPEGs stored as 8-bit gray and as 3-channel
RGB, masks whose values lie in 0-7 / 248-255 instead of exactly 0/255, no-tumour images only in
``classification_task``, every segmentation image byte-identical to a classification image, BRISC file names
with three views, a ``manifest.csv``, a ``synthetic.json`` marker (:func:`is_synthetic_dataset` recognises the
folder afterwards), and a few byte-identical duplicate images inside train and across
train/test.

What a slice shows: scalp, skull (dark tables around brighter marrow), a CSF rim, folded cortex (grey matter)
around brighter white matter, ventricles, a midline fissure, and in coronal/sagittal (and low axial) slices the
skull base with the pituitary gland, sphenoid sinus, brainstem and cerebellum. The tumour classes differ the way
real ones do, by place and shape more than by brightness:

* meningioma: outside the brain tissue, against the inner skull (flat on that side), smooth, bright, homogeneous;
* glioma: inside a cerebral hemisphere, irregular and lobulated, heterogeneous (bright rim around a dark necrotic
  core, or mottled), with darker oedema around it that is not part of the mask;
* pituitary: small, round, in the midline at the skull base (sella), often with an upward extension;
* no tumour: none (the normal pituitary gland is still there, small and grey).

Sizes and brightness overlap between classes, so a model has to learn shape and place. Each image has its own
random generator seeded from ``(seed, split, index)``: the output is the same for a seed on every machine.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR, TUMOR_CODES

CLASS_CODES: tuple[str, ...] = tuple(
    next(code for code, name in TUMOR_CODES.items() if name == class_name) for class_name in CLASS_NAMES
)
"""File-name code of each class, in class-index order (``gl``, ``me``, ``pi``, ``no``)."""

VIEWS: tuple[str, ...] = ("ax", "co", "sa")
"""BRISC view codes: axial, coronal, sagittal."""

BRISC_TRAIN_PROPORTIONS: tuple[float, ...] = (1147 / 5000, 1329 / 5000, 1457 / 5000, 1067 / 5000)
"""Class proportions of BRISC's training split (glioma, meningioma, pituitary, no tumour)."""

BRISC_TEST_PROPORTIONS: tuple[float, ...] = (254 / 1000, 306 / 1000, 300 / 1000, 140 / 1000)
"""Class proportions of BRISC's test split."""

VIEW_PROPORTIONS: tuple[float, ...] = (0.4, 0.3, 0.3)

# (height, width, weight). Mostly 256x256 like the quickstart's working size; real BRISC is mostly 512x512
# (4,881 of 6,000) with sides from 174 to 1,427 px. About 11% non-square, as in BRISC (659 of 6,000).
IMAGE_SIZES: tuple[tuple[int, int, float], ...] = (
    (256, 256, 0.70),
    (224, 224, 0.06),
    (288, 288, 0.06),
    (320, 320, 0.04),
    (192, 192, 0.03),
    (256, 320, 0.04),
    (224, 288, 0.03),
    (320, 256, 0.02),
    (240, 200, 0.02),
)

_SPLIT_IDS = {"train": 1, "test": 2, "val": 3}


# ----------------------------------------------------------------------------------------------------------
# Random fields and shapes
# ----------------------------------------------------------------------------------------------------------
def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth Gaussian random field with unit standard deviation and features about ``scale`` px wide."""
    height, width = shape
    grid_h = max(2, round(height / scale) + 2)
    grid_w = max(2, round(width / scale) + 2)
    small = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0
) -> np.ndarray:
    """Normalised elliptical radius (1 on the ellipse) of every pixel; ``angle`` in radians."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = (dx * c + dy * s) / ax
    v = (-dx * s + dy * c) / ay
    return np.sqrt(u * u + v * v)


def _blob(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    radius: float,
    irregularity: float,
    harmonics: int,
    stretch: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Normalised radius of a star-shaped blob whose boundary radius varies smoothly with the angle."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = dx * c + dy * s
    v = (-dx * s + dy * c) * stretch
    theta = np.arctan2(v, u)
    boundary = np.ones_like(theta)
    for k in range(2, harmonics + 2):
        amplitude = irregularity * rng.uniform(0.3, 1.0) / math.sqrt(k - 1)
        boundary += amplitude * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    boundary = np.maximum(boundary, 0.35)
    return np.sqrt(u * u + v * v) / (radius * boundary)


def _distance_inside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel inside ``mask`` to the nearest pixel outside it."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)


# ----------------------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Slice:
    """Intermediate state of one drawn slice (all arrays ``(H, W)``)."""

    image: np.ndarray  # float32 T1 intensity, roughly 0..1
    intracranial: np.ndarray  # bool: inside the inner skull table, above the skull base
    cerebrum: np.ndarray  # bool: cerebral hemispheres (where gliomas grow)
    brain_depth: np.ndarray  # float32 px from the brain surface
    convexity: np.ndarray  # bool: inner skull surface where a meningioma may attach
    sella: tuple[float, float]  # (x, y) of the pituitary fossa, or the slice's midline-base point
    x: np.ndarray
    y: np.ndarray
    cx: float
    cy: float
    rx: float
    ry: float
    px: float  # pixels per "256-image pixel": sizes are drawn for 256 px and scaled


def _draw_anatomy(rng: np.random.Generator, height: int, width: int, view: str, low_axial: bool) -> _Slice:
    """Draw a tumour-free slice of the given view."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    px = min(height, width) / 256.0
    cx = width / 2.0 + rng.uniform(-0.03, 0.03) * width
    cy = height / 2.0 + rng.uniform(-0.03, 0.03) * height
    # Head half-axes: axial is longer front-to-back (vertical), sagittal longer horizontally.
    aspect = {"ax": rng.uniform(1.12, 1.25), "co": rng.uniform(0.98, 1.08), "sa": rng.uniform(0.82, 0.9)}[view]
    ry = rng.uniform(0.40, 0.45) * height
    rx = ry / aspect
    if rx > 0.44 * width:
        rx = 0.44 * width
        ry = min(rx * aspect, 0.45 * height)
    if view != "ax":
        cy -= 0.04 * height  # leave room for the skull base and neck below the brain
    u = (x - cx) / rx
    v = (y - cy) / ry

    shape_noise = _noise(rng, (height, width), 90 * px)
    head_r = np.sqrt(u * u + v * v) * (1 + 0.025 * shape_noise)
    if view == "ax":
        head_r = head_r * (1 + 0.06 * np.clip(-v, 0, None) ** 2)  # narrower forehead
    head = head_r < 1.0
    if view in ("co", "sa"):
        # Neck below the head: a soft column that reaches the bottom of the image.
        neck_x = 0.12 if view == "sa" else 0.0
        neck = (np.abs(u - neck_x) < 0.42 + 0.15 * np.clip(v - 0.6, 0, None)) & (v > 0.5)
        head |= neck
    depth = _distance_inside(head)

    scalp = rng.uniform(4.0, 6.5) * px
    skull = rng.uniform(5.0, 8.0) * px
    csf_gap = rng.uniform(1.5, 2.8) * px
    inner = scalp + skull

    # Skull base line (v coordinate below which there is no brain) for coronal and sagittal views.
    base = np.full_like(u, 10.0)
    sella_uv = (0.0, -0.1)
    if view == "co":
        base = 0.3 + 0.26 * _smoothstep(0.12, 0.5, np.abs(u)) + 0.02 * shape_noise  # temporal lobes hang lower
        sella_uv = (0.0, 0.34)
    elif view == "sa":
        # Anterior (left) the frontal lobe sits on the orbits; posterior the cerebellum reaches lower.
        base = 0.3 + 0.42 * _smoothstep(-0.05, 0.45, u) + 0.02 * shape_noise
        sella_uv = (-0.12, 0.3)
    elif low_axial:
        sella_uv = (0.0, -0.22)
    sella = (cx + sella_uv[0] * rx, cy + sella_uv[1] * ry)

    cranium = head & (v < base + 0.1)
    intracranial = (depth > inner) & (v < base)
    brain_surface_noise = _noise(rng, (height, width), 7 * px)
    brain = (depth > inner + csf_gap + 0.9 * px * brain_surface_noise) & (v < base - 0.03)

    image = np.zeros((height, width), dtype=np.float32)
    # Background: air, nearly black with a little noise.
    image[:] = 0.02
    # Scalp and subcutaneous fat (bright on T1) over everything inside the head outline.
    fat_texture = _noise(rng, (height, width), 3 * px)
    image[head] = (0.72 + 0.06 * fat_texture)[head]
    # Soft tissue of the neck and face below the skull base: muscle (mid grey) with fat streaks.
    if view in ("co", "sa"):
        soft = head & (v >= base + 0.02) & (depth > scalp)
        muscle = (
            0.36 + 0.05 * _noise(rng, (height, width), 5 * px) + 0.18 * (_noise(rng, (height, width), 12 * px) > 1.1)
        )
        image[soft] = muscle[soft]
    # Skull: dark outer and inner tables around brighter marrow (diploe).
    skull_band = cranium & (depth > scalp) & (depth <= inner)
    t = (depth - scalp) / skull
    diploe = np.exp(-(((t - 0.5) / 0.15) ** 2))
    skull_intensity = 0.06 + (0.2 + 0.05 * fat_texture) * diploe
    image[skull_band] = skull_intensity[skull_band]
    # Skull base: bone and the air of the sphenoid sinus under the sella.
    if view in ("co", "sa"):
        base_band = head & (v >= base - 0.03) & (v < base + 0.06) & (depth > scalp)
        image[base_band] = (0.09 + 0.05 * fat_texture)[base_band]
        sinus = _ellipse(
            x, y, sella[0] + (0.05 if view == "sa" else 0.0) * rx, sella[1] + 0.17 * ry, 0.13 * rx, 0.09 * ry
        )
        image[(sinus < 1.0) & head] = 0.03
    # Cerebrospinal fluid fills the intracranial space; the brain is drawn over it.
    csf = 0.13
    image[intracranial] = csf

    brain_depth = _distance_inside(brain)
    # Cortex: a grey-matter ribbon along the brain surface that also lines every sulcus. Sulci are level
    # lines of a smooth random field, cut in from the surface to a random depth; white matter fills the gyri.
    gm, wm = rng.uniform(0.33, 0.39), rng.uniform(0.6, 0.66)
    fold = _noise(rng, (height, width), 10 * px)
    sulcus_depth = (11.0 + 4.0 * _noise(rng, (height, width), 25 * px)) * px
    reach = _smoothstep(sulcus_depth + 2 * px, sulcus_depth - 2 * px, brain_depth)
    sulci = np.exp(-((fold / 0.07) ** 2)) * reach
    ribbon_width = 0.42 + 0.1 * _noise(rng, (height, width), 15 * px)
    along_sulci = _smoothstep(ribbon_width + 0.1, ribbon_width - 0.05, np.abs(fold)) * _smoothstep(
        sulcus_depth + 5 * px, sulcus_depth + 1 * px, brain_depth
    )
    surface_ribbon = _smoothstep(5.5 * px, 3.0 * px, brain_depth)
    grey = np.maximum(along_sulci, surface_ribbon)
    tissue = wm + (gm - wm) * grey
    tissue += 0.018 * _noise(rng, (height, width), 2.0 * px) + 0.015 * _noise(rng, (height, width), 20 * px)
    tissue = tissue * (1 - sulci) + csf * sulci
    image[brain] = tissue[brain]

    cerebrum = brain.copy()
    # Midline structures and ventricles per view (dark CSF shapes drawn into the brain).
    midline_x = cx + 0.01 * rx * _noise(rng, (height, width), 60 * px)
    fissure = np.exp(-(((x - midline_x) / (1.1 * px)) ** 2))
    ventricle = np.zeros_like(image)
    scale = rng.uniform(0.75, 1.25)
    if view == "ax" and not low_axial:
        gap = 0.1 * scale
        for side in (-1, 1):
            # Lateral ventricle: frontal horn close to the midline, body and atrium diverging backwards.
            along = (y - (cy - 0.05 * ry)) / (0.3 * ry)
            bent_x = x - side * 0.1 * rx * np.clip((along + 0.6) / 1.6, 0, None) ** 2
            width_profile = 0.045 * scale * rx * (1.2 - 0.3 * np.clip(along, -1, 1))
            horn = np.sqrt(((bent_x - cx - side * gap * rx) / width_profile) ** 2 + along**2)
            ventricle = np.maximum(ventricle, 1 - _smoothstep(0.85, 1.05, horn))
        third = _ellipse(x, y, cx, cy + 0.08 * ry, 0.015 * rx, 0.08 * ry)
        ventricle = np.maximum(ventricle, 1 - _smoothstep(0.8, 1.05, third))
        fissure_zone = (np.abs(v) > 0.42) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    elif view == "ax":
        # Low axial (skull base): pons with the fourth ventricle behind it, two cerebellar hemispheres,
        # temporal lobes at the sides, the sphenoid sinus in front of the sella and the orbits at the front.
        pons = _ellipse(x, y, cx, cy + 0.2 * ry, 0.15 * rx, 0.13 * ry) < 1
        image[pons & brain] = (wm - 0.04 + 0.02 * fat_texture)[pons & brain]
        fourth = _ellipse(x, y, cx, cy + 0.37 * ry, 0.06 * rx, 0.025 * ry)
        ventricle = np.maximum(ventricle, 1 - _smoothstep(0.8, 1.05, fourth))
        hemispheres = np.minimum(
            _ellipse(x, y, cx - 0.24 * rx, cy + 0.62 * ry, 0.36 * rx, 0.3 * ry),
            _ellipse(x, y, cx + 0.24 * rx, cy + 0.62 * ry, 0.36 * rx, 0.3 * ry),
        )
        cerebellum = (hemispheres < 1) & brain
        folia = 0.5 + 0.5 * np.sin(
            _ellipse(x, y, cx, cy + 0.2 * ry, 1, 1) / (2.0 * px) + 2 * _noise(rng, (height, width), 12 * px)
        )
        image[cerebellum] = (gm + (wm - gm) * 0.6 * folia)[cerebellum]
        tentorium = (hemispheres > 1.0) & (hemispheres < 1.06) & brain & (v > 0.35)
        image[tentorium] = csf
        cerebrum &= ~cerebellum & ~pons & ~tentorium
        sinus = _ellipse(x, y, cx, cy - 0.45 * ry, 0.13 * rx, 0.12 * ry) < 1
        image[sinus & head] = 0.03
        cerebrum &= _ellipse(x, y, cx, cy - 0.45 * ry, 0.2 * rx, 0.2 * ry) > 1
        for side in (-1, 1):
            orbit = _ellipse(x, y, cx + side * 0.32 * rx, cy - 0.8 * ry, 0.12 * rx, 0.1 * ry)
            image[(orbit < 1.4) & head] = (0.7 + 0.05 * fat_texture)[(orbit < 1.4) & head]  # orbital fat
            image[(orbit < 1.0) & head] = 0.1  # eyeball
            cerebrum &= orbit > 1.6
        fissure_zone = (v < -0.6) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    elif view == "co":
        for side in (-1, 1):
            horn = _ellipse(
                x, y, cx + side * 0.1 * rx, cy - 0.04 * ry, 0.05 * scale * rx, 0.13 * scale * ry, -side * 0.6
            )
            ventricle = np.maximum(ventricle, 1 - _smoothstep(0.85, 1.05, horn))
            sylvian = _ellipse(x, y, cx + side * 0.62 * rx, cy + 0.12 * ry, 0.22 * rx, 0.012 * ry, side * 0.25)
            ventricle = np.maximum(ventricle, 0.8 * (1 - _smoothstep(0.6, 1.2, sylvian)))
        third = _ellipse(x, y, cx, cy + 0.12 * ry, 0.015 * rx, 0.1 * ry)
        ventricle = np.maximum(ventricle, 1 - _smoothstep(0.8, 1.05, third))
        fissure_zone = (v < -0.22) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    else:  # sagittal
        callosum = _ellipse(x, y, cx + 0.02 * rx, cy + 0.02 * ry, 0.36 * rx, 0.2 * ry)
        arc = (callosum > 0.8) & (callosum < 1.0) & (v < 0.08)
        image[arc & brain] = wm + 0.07
        lateral = _ellipse(x, y, cx + 0.02 * rx, cy + 0.03 * ry, 0.3 * scale * rx, 0.12 * scale * ry)
        ventricle = np.maximum(ventricle, (1 - _smoothstep(0.85, 1.05, lateral)) * (v < 0.05))
        cerebellum = brain & (u > 0.25) & (v > 0.32)
        folia = 0.5 + 0.5 * np.sin(
            _ellipse(x, y, cx + 0.5 * rx, cy + 0.55 * ry, 1, 1) / (2.2 * px) + 2 * _noise(rng, (height, width), 12 * px)
        )
        image[cerebellum] = (gm + (wm - gm) * 0.6 * folia)[cerebellum]
        tentorium = np.abs((v - 0.32) - 0.15 * (u - 0.25)) < 0.012
        image[tentorium & brain & (u > 0.2)] = csf
        cerebrum &= ~cerebellum
        stem = (np.abs(u - 0.12 - 0.12 * np.clip(v - 0.3, 0, None)) < 0.075) & (v > 0.22) & head & (depth > scalp)
        image[stem] = (wm - 0.05 + 0.02 * fat_texture)[stem]
        cerebrum &= ~stem
    image = image * (1 - ventricle) + csf * 0.8 * ventricle
    cerebrum &= ventricle < 0.5

    # Normal pituitary gland in its fossa (every slice that shows the skull base, whatever the class).
    if view in ("co", "sa") or low_axial:
        gland = _ellipse(x, y, sella[0], sella[1], 0.045 * rx, 0.032 * ry) < 1
        image[gland] = 0.5 + 0.02 * rng.standard_normal()
        cerebrum &= _ellipse(x, y, sella[0], sella[1], 0.25 * rx, 0.25 * ry) > 1

    # Where a meningioma may attach: the inner skull surface over the convexity.
    rim = intracranial & (depth < inner + 2.0 * px)
    if view == "ax":
        convexity = rim & (v > -0.95) if not low_axial else rim & (v > -0.3)
    else:
        convexity = rim & (v < 0.1)
    return _Slice(
        image=image,
        intracranial=intracranial,
        cerebrum=cerebrum,
        brain_depth=brain_depth,
        convexity=convexity,
        sella=sella,
        x=x,
        y=y,
        cx=cx,
        cy=cy,
        rx=rx,
        ry=ry,
        px=px,
    )


# ----------------------------------------------------------------------------------------------------------
# Tumours
# ----------------------------------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float] | None:
    candidates = np.flatnonzero(mask)
    if candidates.size == 0:
        return None
    index = int(candidates[rng.integers(candidates.size)])
    return float(index % mask.shape[1]), float(index // mask.shape[1])


def _draw_meningioma(rng: np.random.Generator, s: _Slice) -> np.ndarray:
    point = _pick(rng, s.convexity)
    if point is None:  # pragma: no cover - every drawn slice has a convexity
        point = (s.cx, s.cy - 0.8 * s.ry)
    normal = math.atan2((point[1] - s.cy) / s.ry, (point[0] - s.cx) / s.rx)
    radial = rng.uniform(13.0, 29.0) * s.px
    tangential = radial * rng.uniform(1.1, 1.7)
    inset = radial * rng.uniform(0.15, 0.45)
    cx = point[0] - math.cos(normal) * inset
    cy = point[1] - math.sin(normal) * inset
    shape = _blob(rng, s.x, s.y, cx, cy, radial, 0.06, 2, stretch=radial / tangential, angle=normal)
    mask = (shape < 1.0) & s.intracranial
    # A thin CSF cleft separates the well-defined tumour from the displaced brain.
    cleft = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, round(1.5 * s.px)))
    ring = (cleft > 0) & ~mask & s.intracranial
    s.image[ring] = s.image[ring] * 0.45 + 0.13 * 0.55
    brightness = rng.uniform(0.68, 0.92)
    texture = 0.025 * _noise(rng, s.image.shape, 3 * s.px)
    edge = _smoothstep(1.0, 0.8, shape)
    value = brightness + texture - 0.06 * (1 - edge)
    s.image[mask] = value[mask]
    if rng.random() < 0.35:  # dural tail: enhancing dura tapering along the skull (not part of the mask)
        along = _blob(rng, s.x, s.y, cx, cy, tangential * 1.9, 0.02, 1, stretch=9.0, angle=normal + math.pi / 2)
        tail = (along < 1.0) & ~mask & s.intracranial & (s.brain_depth < 1.5 * s.px)
        s.image[tail] = np.maximum(s.image[tail], brightness * 0.8)
    return mask


def _draw_glioma(rng: np.random.Generator, s: _Slice) -> np.ndarray:
    radius = rng.uniform(12.0, 30.0) * s.px
    u = np.abs(s.x - s.cx) / s.rx
    allowed = s.cerebrum & (s.brain_depth > 0.75 * radius) & (u > 0.12)
    point = _pick(rng, allowed)
    if point is None:
        radius *= 0.6
        point = _pick(rng, s.cerebrum & (s.brain_depth > 0.6 * radius)) or (s.cx + 0.3 * s.rx, s.cy)
    cx, cy = point
    shape = _blob(
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
    shape = shape * (1 + 0.08 * _noise(rng, s.image.shape, 4 * s.px))  # ragged margin
    mask = (shape < 1.0) & (s.brain_depth > 0)
    # Oedema: hypointense brain around the tumour (T1), irregular, outside the mask.
    oedema = (shape < rng.uniform(1.35, 1.8)) & ~mask & (s.brain_depth > 0)
    s.image[oedema] *= rng.uniform(0.72, 0.85)
    mottled = _noise(rng, s.image.shape, 3.5 * s.px)
    if rng.random() < 0.6:
        # Ring enhancement around a dark necrotic core.
        rim = rng.uniform(0.25, 0.45)
        core = _smoothstep(1.0 - rim, 1.0 - rim - 0.15, shape)
        bright, dark = rng.uniform(0.6, 0.88), rng.uniform(0.12, 0.3)
        value = dark * core + bright * (1 - core) + 0.05 * mottled
    else:
        # Heterogeneous mass: mixed dark and bright patches.
        value = rng.uniform(0.38, 0.5) + 0.13 * mottled + 0.2 * (_noise(rng, s.image.shape, 6 * s.px) > 0.9)
    s.image[mask] = value[mask]
    return mask


def _draw_pituitary(rng: np.random.Generator, s: _Slice) -> np.ndarray:
    radius = rng.uniform(10.0, 19.0) * s.px
    cx = s.sella[0] + rng.uniform(-1.5, 1.5) * s.px
    cy = s.sella[1] - radius * rng.uniform(0.3, 0.6)  # grows up out of the sella
    shape = _blob(rng, s.x, s.y, cx, cy, radius, 0.07, 3, stretch=rng.uniform(0.85, 1.15))
    mask = shape < 1.0
    if rng.random() < 0.4:  # suprasellar extension ("snowman")
        top = _blob(rng, s.x, s.y, cx, cy - radius * 0.9, radius * rng.uniform(0.55, 0.75), 0.08, 2)
        mask |= top < 1.0
        shape = np.minimum(shape, top)
    brightness = rng.uniform(0.58, 0.86)
    value = brightness + 0.03 * _noise(rng, s.image.shape, 3 * s.px) - 0.05 * _smoothstep(0.75, 1.0, shape)
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
    s = _draw_anatomy(rng, height, width, view, low_axial)
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
    image = image * (1 + 0.1 * _noise(rng, image.shape, 100 * s.px))
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


def brisc_name(split: str, index: int, label: int, view: str, ext: str = "jpg") -> str:
    """BRISC file name, e.g. ``brisc2025_train_00010_gl_ax_t1.jpg``."""
    return f"brisc2025_{split}_{index:05d}_{CLASS_CODES[label]}_{view}_t1.{ext}"


def _class_counts(total: int, proportions: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``total * proportions`` (sums to ``total``)."""
    raw = [total * p for p in proportions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class _Job:
    seed: int
    split: str
    index: int
    label: int


def _render(job: _Job) -> tuple[bytes, bytes | None, dict]:
    """Draw one image and encode it (and its mask); runs in worker processes when asked for."""
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, _SPLIT_IDS[job.split], job.index]))
    weights = np.array([w for _, _, w in IMAGE_SIZES])
    height, width, _ = IMAGE_SIZES[int(rng.choice(len(IMAGE_SIZES), p=weights / weights.sum()))]
    view = VIEWS[int(rng.choice(len(VIEWS), p=VIEW_PROPORTIONS))]
    image, mask = synthesize_slice(rng, job.label, view, height, width)
    stored_rgb = rng.random() < 0.4  # BRISC stores some JPEGs as 3-channel RGB that is effectively gray
    pixels = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if stored_rgb else image
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(88, 96))])
    assert ok
    mask_png = noisy_mask_png(rng, mask) if job.label != NO_TUMOR else None
    info = {
        "view": view,
        "height": height,
        "width": width,
        "channels": 3 if stored_rgb else 1,
        "tumor_area_fraction": float(mask.mean()),
    }
    return encoded.tobytes(), mask_png, info


def dataset_exists(root: str | Path) -> bool:
    """Tell whether ``root`` already holds a BRISC-layout dataset (either task folder)."""
    root = Path(root)
    return (root / "classification_task").is_dir() or (root / "segmentation_task").is_dir()


SYNTHETIC_MARKER = "synthetic.json"
"""File the generator writes at the dataset root, last: it says the folder is synthetic and how it was drawn."""

_GENERATOR = "brain_mtl.data.synthetic"
_MANIFEST_FIELDS = (
    "path",
    "mask_path",
    "task",
    "split",
    "class",
    "code",
    "view",
    "sequence",
    "height",
    "width",
    "stored_channels",
    "tumor_area_fraction",
    "duplicate_of_train_index",
)


def is_synthetic_dataset(root: str | Path) -> bool:
    """Tell whether ``root`` holds a dataset written by :func:`generate_synthetic_dataset`.

    True when the folder has the generator's ``synthetic.json`` marker, or (folders generated before the marker
    existed) a ``manifest.csv`` with exactly the generator's columns. BRISC's own manifest has other columns.
    """
    root = Path(root)
    try:
        marker = json.loads((root / SYNTHETIC_MARKER).read_text(encoding="utf-8"))
        if isinstance(marker, dict) and marker.get("generator") == _GENERATOR:
            return True
    except (OSError, ValueError):
        pass
    try:
        with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(header) == _MANIFEST_FIELDS


@dataclass(frozen=True)
class SynthesisReport:
    """What :func:`generate_synthetic_dataset` wrote."""

    root: Path
    counts: dict[str, list[int]]  # split -> images per class (classification_task)
    segmentation_pairs: dict[str, int]
    duplicates: dict[str, int]  # "within_train" / "train_test" -> duplicate images written
    seconds: float


def generate_synthetic_dataset(
    root: str | Path,
    n_train: int = 500,
    n_test: int = 100,
    seed: int = 42,
    duplicates: bool = True,
    workers: int = 0,
) -> SynthesisReport:
    """Write a synthetic dataset in the BRISC 2025 layout under ``root``.

    Args:
        root: output folder; must not already hold ``classification_task`` or ``segmentation_task``.
        n_train: classification images in ``train`` (class proportions as in BRISC's train split).
        n_test: classification images in ``test`` (proportions as in BRISC's test split).
        seed: the same seed writes byte-identical files.
        duplicates: copy a few images byte-for-byte under other names, inside train (about 0.6%) and from train
            into test (about 2% of test), as BRISC has (46 duplicate groups, 7 spanning train and test).
        workers: processes to draw images with (0: in this process). The output does not depend on it.

    Returns:
        A :class:`SynthesisReport` of what was written.

    Raises:
        FileExistsError: ``root`` already holds a dataset.
    """
    start = time.perf_counter()
    root = Path(root)
    if dataset_exists(root):
        raise FileExistsError(
            f"{root} already holds a dataset (classification_task/ or segmentation_task/); "
            "choose an empty folder or delete it first."
        )
    split_rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    jobs: dict[str, list[_Job]] = {}
    copies: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}  # (index, source train index)
    for split, total, proportions in (
        ("train", n_train, BRISC_TRAIN_PROPORTIONS),
        ("test", n_test, BRISC_TEST_PROPORTIONS),
    ):
        labels = np.repeat(np.arange(len(CLASS_NAMES)), _class_counts(total, proportions))
        split_rng.shuffle(labels)
        jobs[split] = [_Job(seed, split, i + 1, int(label)) for i, label in enumerate(labels)]
    if duplicates:
        n_within = round(0.006 * n_train) if n_train >= 50 else 0
        n_across = round(0.02 * n_test) if n_test >= 25 and n_train >= 50 else 0
        # Duplicates are the last images of a split, copies of earlier train images of the same class.
        for split, count in (("train", n_within), ("test", n_across)):
            for job in jobs[split][len(jobs[split]) - count :]:
                limit = len(jobs["train"]) - n_within
                sources = [j.index for j in jobs["train"][:limit] if j.label == job.label]
                if sources:
                    copies[split].append((job.index, int(split_rng.choice(sources))))
    copy_of = {(split, index): source for split in copies for index, source in copies[split]}

    for split in ("train", "test"):
        for label in range(len(CLASS_NAMES)):
            (root / "classification_task" / split / CLASS_NAMES[label]).mkdir(parents=True, exist_ok=True)
        for sub in ("images", "masks"):
            (root / "segmentation_task" / split / sub).mkdir(parents=True, exist_ok=True)

    to_draw = [job for split in ("train", "test") for job in jobs[split] if (split, job.index) not in copy_of]
    if workers and workers > 0:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rendered = list(pool.map(_render, to_draw, chunksize=8))
    else:
        rendered = [_render(job) for job in to_draw]
    outputs = {(job.split, job.index): out for job, out in zip(to_draw, rendered, strict=True)}

    rows = []
    seg_pairs = {"train": 0, "test": 0}
    counts = {split: [0] * len(CLASS_NAMES) for split in ("train", "test")}
    for split in ("train", "test"):
        for job in jobs[split]:
            source = copy_of.get((split, job.index))
            image_bytes, mask_bytes, info = outputs[("train", source) if source else (split, job.index)]
            name = brisc_name(split, job.index, job.label, info["view"])
            cls_path = root / "classification_task" / split / CLASS_NAMES[job.label] / name
            cls_path.write_bytes(image_bytes)
            counts[split][job.label] += 1
            rows.append(_manifest_row(root, cls_path, split, "classification", job.label, info, source))
            if mask_bytes is not None:
                seg_image = root / "segmentation_task" / split / "images" / name
                seg_mask = seg_image.parent.parent / "masks" / (Path(name).stem + ".png")
                seg_image.write_bytes(image_bytes)
                seg_mask.write_bytes(mask_bytes)
                seg_pairs[split] += 1
                rows.append(
                    _manifest_row(root, seg_image, split, "segmentation", job.label, info, source, mask=seg_mask)
                )
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_MANIFEST_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    marker = {
        "generator": _GENERATOR,
        "note": "synthetic images drawn by brain_mtl, not real MRI scans",
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "duplicates": duplicates,
    }
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return SynthesisReport(
        root=root,
        counts=counts,
        segmentation_pairs=seg_pairs,
        duplicates={"within_train": len(copies["train"]), "train_test": len(copies["test"])},
        seconds=time.perf_counter() - start,
    )


def _manifest_row(
    root: Path, path: Path, split: str, task: str, label: int, info: dict, source: int | None, mask: Path | None = None
) -> dict:
    return {
        "path": path.relative_to(root).as_posix(),
        "mask_path": mask.relative_to(root).as_posix() if mask else "",
        "task": task,
        "split": split,
        "class": CLASS_NAMES[label],
        "code": CLASS_CODES[label],
        "view": info["view"],
        "sequence": "t1",
        "height": info["height"],
        "width": info["width"],
        "stored_channels": info["channels"],
        "tumor_area_fraction": f"{info['tumor_area_fraction']:.5f}",
        "duplicate_of_train_index": source or "",
    }
