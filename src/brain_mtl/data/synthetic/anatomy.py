"""The healthy head of a synthetic slice: smooth random fields, shapes, and the anatomy of each view.

What a slice shows: scalp, skull (dark tables around brighter marrow), a CSF rim, folded cortex (grey matter)
around brighter white matter, ventricles, a midline fissure, and in coronal/sagittal (and low axial) slices the
skull base with the pituitary gland, sphenoid sinus, brainstem and cerebellum. :mod:`brain_mtl.data.synthetic.phantom`
draws the tumours into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Slice", "blob", "distance_inside", "draw_anatomy", "ellipse", "noise", "smoothstep"]


# ----------------------------------------------------------------------------------------------------------
# Random fields and shapes
# ----------------------------------------------------------------------------------------------------------
def noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Smooth Gaussian random field with unit standard deviation and features about ``scale`` px wide.

    Args:
        rng: the image's random generator.
        shape: ``(H, W)`` of the field.
        scale: feature width in pixels.

    Returns:
        ``(H, W)`` float32 field, mean 0, standard deviation 1.
    """
    height, width = shape
    grid_h = max(2, round(height / scale) + 2)
    grid_w = max(2, round(width / scale) + 2)
    small = rng.standard_normal((grid_h, grid_w)).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    field /= field.std() + 1e-6
    return field


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Smooth 0-to-1 ramp of ``x`` between ``edge0`` and ``edge1`` (Hermite interpolation, clipped).

    Args:
        edge0: where the ramp is 0 (may be above ``edge1`` for a falling ramp).
        edge1: where the ramp is 1.
        x: values to map.
    """
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> np.ndarray:
    """Normalised elliptical radius (1 on the ellipse) of every pixel.

    Args:
        x: ``(H, W)`` pixel column coordinates.
        y: ``(H, W)`` pixel row coordinates.
        cx: centre column.
        cy: centre row.
        ax: half-axis along the rotated x direction, in pixels.
        ay: half-axis along the rotated y direction, in pixels.
        angle: rotation in radians.
    """
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = (dx * c + dy * s) / ax
    v = (-dx * s + dy * c) / ay
    return np.sqrt(u * u + v * v)


def blob(
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
    """Normalised radius (1 on the boundary) of a star-shaped blob whose radius varies smoothly with the angle.

    Args:
        rng: draws the boundary's harmonics.
        x: ``(H, W)`` pixel column coordinates.
        y: ``(H, W)`` pixel row coordinates.
        cx: centre column.
        cy: centre row.
        radius: mean radius in pixels.
        irregularity: amplitude of the boundary's harmonics (0: an ellipse).
        harmonics: number of harmonics (2, 3, ... lobes).
        stretch: squeeze along the rotated y direction.
        angle: rotation in radians.
    """
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


def distance_inside(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel inside ``mask`` to the nearest pixel outside it.

    Args:
        mask: ``(H, W)`` boolean region.
    """
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)


# ----------------------------------------------------------------------------------------------------------
# Anatomy
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Slice:
    """Intermediate state of one drawn slice (all arrays ``(H, W)``), which the tumour drawing reads and paints."""

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


def draw_anatomy(rng: np.random.Generator, height: int, width: int, view: str, low_axial: bool) -> Slice:
    """Draw a tumour-free slice of the given view.

    Args:
        rng: the image's random generator.
        height: image height in pixels.
        width: image width in pixels.
        view: ``"ax"``, ``"co"`` or ``"sa"``.
        low_axial: an axial slice low enough to show the skull base and the sella.

    Returns:
        The :class:`Slice`, its ``image`` float32 in about 0..1.
    """
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

    shape_noise = noise(rng, (height, width), 90 * px)
    head_r = np.sqrt(u * u + v * v) * (1 + 0.025 * shape_noise)
    if view == "ax":
        head_r = head_r * (1 + 0.06 * np.clip(-v, 0, None) ** 2)  # narrower forehead
    head = head_r < 1.0
    if view in ("co", "sa"):
        # Neck below the head: a soft column that reaches the bottom of the image.
        neck_x = 0.12 if view == "sa" else 0.0
        neck = (np.abs(u - neck_x) < 0.42 + 0.15 * np.clip(v - 0.6, 0, None)) & (v > 0.5)
        head |= neck
    depth = distance_inside(head)

    scalp = rng.uniform(4.0, 6.5) * px
    skull = rng.uniform(5.0, 8.0) * px
    csf_gap = rng.uniform(1.5, 2.8) * px
    inner = scalp + skull

    # Skull base line (v coordinate below which there is no brain) for coronal and sagittal views.
    base = np.full_like(u, 10.0)
    sella_uv = (0.0, -0.1)
    if view == "co":
        base = 0.3 + 0.26 * smoothstep(0.12, 0.5, np.abs(u)) + 0.02 * shape_noise  # temporal lobes hang lower
        sella_uv = (0.0, 0.34)
    elif view == "sa":
        # Anterior (left) the frontal lobe sits on the orbits; posterior the cerebellum reaches lower.
        base = 0.3 + 0.42 * smoothstep(-0.05, 0.45, u) + 0.02 * shape_noise
        sella_uv = (-0.12, 0.3)
    elif low_axial:
        sella_uv = (0.0, -0.22)
    sella = (cx + sella_uv[0] * rx, cy + sella_uv[1] * ry)

    cranium = head & (v < base + 0.1)
    intracranial = (depth > inner) & (v < base)
    brain_surface_noise = noise(rng, (height, width), 7 * px)
    brain = (depth > inner + csf_gap + 0.9 * px * brain_surface_noise) & (v < base - 0.03)

    image = np.zeros((height, width), dtype=np.float32)
    # Background: air, nearly black with a little noise.
    image[:] = 0.02
    # Scalp and subcutaneous fat (bright on T1) over everything inside the head outline.
    fat_texture = noise(rng, (height, width), 3 * px)
    image[head] = (0.72 + 0.06 * fat_texture)[head]
    # Soft tissue of the neck and face below the skull base: muscle (mid grey) with fat streaks.
    if view in ("co", "sa"):
        soft = head & (v >= base + 0.02) & (depth > scalp)
        muscle = 0.36 + 0.05 * noise(rng, (height, width), 5 * px) + 0.18 * (noise(rng, (height, width), 12 * px) > 1.1)
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
        sinus = ellipse(
            x, y, sella[0] + (0.05 if view == "sa" else 0.0) * rx, sella[1] + 0.17 * ry, 0.13 * rx, 0.09 * ry
        )
        image[(sinus < 1.0) & head] = 0.03
    # Cerebrospinal fluid fills the intracranial space; the brain is drawn over it.
    csf = 0.13
    image[intracranial] = csf

    brain_depth = distance_inside(brain)
    # Cortex: a grey-matter ribbon along the brain surface that also lines every sulcus. Sulci are level
    # lines of a smooth random field, cut in from the surface to a random depth; white matter fills the gyri.
    gm, wm = rng.uniform(0.33, 0.39), rng.uniform(0.6, 0.66)
    fold = noise(rng, (height, width), 10 * px)
    sulcus_depth = (11.0 + 4.0 * noise(rng, (height, width), 25 * px)) * px
    reach = smoothstep(sulcus_depth + 2 * px, sulcus_depth - 2 * px, brain_depth)
    sulci = np.exp(-((fold / 0.07) ** 2)) * reach
    ribbon_width = 0.42 + 0.1 * noise(rng, (height, width), 15 * px)
    along_sulci = smoothstep(ribbon_width + 0.1, ribbon_width - 0.05, np.abs(fold)) * smoothstep(
        sulcus_depth + 5 * px, sulcus_depth + 1 * px, brain_depth
    )
    surface_ribbon = smoothstep(5.5 * px, 3.0 * px, brain_depth)
    grey = np.maximum(along_sulci, surface_ribbon)
    tissue = wm + (gm - wm) * grey
    tissue += 0.018 * noise(rng, (height, width), 2.0 * px) + 0.015 * noise(rng, (height, width), 20 * px)
    tissue = tissue * (1 - sulci) + csf * sulci
    image[brain] = tissue[brain]

    cerebrum = brain.copy()
    # Midline structures and ventricles per view (dark CSF shapes drawn into the brain).
    midline_x = cx + 0.01 * rx * noise(rng, (height, width), 60 * px)
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
            ventricle = np.maximum(ventricle, 1 - smoothstep(0.85, 1.05, horn))
        third = ellipse(x, y, cx, cy + 0.08 * ry, 0.015 * rx, 0.08 * ry)
        ventricle = np.maximum(ventricle, 1 - smoothstep(0.8, 1.05, third))
        fissure_zone = (np.abs(v) > 0.42) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    elif view == "ax":
        # Low axial (skull base): pons with the fourth ventricle behind it, two cerebellar hemispheres,
        # temporal lobes at the sides, the sphenoid sinus in front of the sella and the orbits at the front.
        pons = ellipse(x, y, cx, cy + 0.2 * ry, 0.15 * rx, 0.13 * ry) < 1
        image[pons & brain] = (wm - 0.04 + 0.02 * fat_texture)[pons & brain]
        fourth = ellipse(x, y, cx, cy + 0.37 * ry, 0.06 * rx, 0.025 * ry)
        ventricle = np.maximum(ventricle, 1 - smoothstep(0.8, 1.05, fourth))
        hemispheres = np.minimum(
            ellipse(x, y, cx - 0.24 * rx, cy + 0.62 * ry, 0.36 * rx, 0.3 * ry),
            ellipse(x, y, cx + 0.24 * rx, cy + 0.62 * ry, 0.36 * rx, 0.3 * ry),
        )
        cerebellum = (hemispheres < 1) & brain
        folia = 0.5 + 0.5 * np.sin(
            ellipse(x, y, cx, cy + 0.2 * ry, 1, 1) / (2.0 * px) + 2 * noise(rng, (height, width), 12 * px)
        )
        image[cerebellum] = (gm + (wm - gm) * 0.6 * folia)[cerebellum]
        tentorium = (hemispheres > 1.0) & (hemispheres < 1.06) & brain & (v > 0.35)
        image[tentorium] = csf
        cerebrum &= ~cerebellum & ~pons & ~tentorium
        sinus = ellipse(x, y, cx, cy - 0.45 * ry, 0.13 * rx, 0.12 * ry) < 1
        image[sinus & head] = 0.03
        cerebrum &= ellipse(x, y, cx, cy - 0.45 * ry, 0.2 * rx, 0.2 * ry) > 1
        for side in (-1, 1):
            orbit = ellipse(x, y, cx + side * 0.32 * rx, cy - 0.8 * ry, 0.12 * rx, 0.1 * ry)
            image[(orbit < 1.4) & head] = (0.7 + 0.05 * fat_texture)[(orbit < 1.4) & head]  # orbital fat
            image[(orbit < 1.0) & head] = 0.1  # eyeball
            cerebrum &= orbit > 1.6
        fissure_zone = (v < -0.6) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    elif view == "co":
        for side in (-1, 1):
            horn = ellipse(
                x, y, cx + side * 0.1 * rx, cy - 0.04 * ry, 0.05 * scale * rx, 0.13 * scale * ry, -side * 0.6
            )
            ventricle = np.maximum(ventricle, 1 - smoothstep(0.85, 1.05, horn))
            sylvian = ellipse(x, y, cx + side * 0.62 * rx, cy + 0.12 * ry, 0.22 * rx, 0.012 * ry, side * 0.25)
            ventricle = np.maximum(ventricle, 0.8 * (1 - smoothstep(0.6, 1.2, sylvian)))
        third = ellipse(x, y, cx, cy + 0.12 * ry, 0.015 * rx, 0.1 * ry)
        ventricle = np.maximum(ventricle, 1 - smoothstep(0.8, 1.05, third))
        fissure_zone = (v < -0.22) & brain
        image = np.where(fissure_zone, image * (1 - fissure) + csf * fissure, image)
    else:  # sagittal
        callosum = ellipse(x, y, cx + 0.02 * rx, cy + 0.02 * ry, 0.36 * rx, 0.2 * ry)
        arc = (callosum > 0.8) & (callosum < 1.0) & (v < 0.08)
        image[arc & brain] = wm + 0.07
        lateral = ellipse(x, y, cx + 0.02 * rx, cy + 0.03 * ry, 0.3 * scale * rx, 0.12 * scale * ry)
        ventricle = np.maximum(ventricle, (1 - smoothstep(0.85, 1.05, lateral)) * (v < 0.05))
        cerebellum = brain & (u > 0.25) & (v > 0.32)
        folia = 0.5 + 0.5 * np.sin(
            ellipse(x, y, cx + 0.5 * rx, cy + 0.55 * ry, 1, 1) / (2.2 * px) + 2 * noise(rng, (height, width), 12 * px)
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
        gland = ellipse(x, y, sella[0], sella[1], 0.045 * rx, 0.032 * ry) < 1
        image[gland] = 0.5 + 0.02 * rng.standard_normal()
        cerebrum &= ellipse(x, y, sella[0], sella[1], 0.25 * rx, 0.25 * ry) > 1

    # Where a meningioma may attach: the inner skull surface over the convexity.
    rim = intracranial & (depth < inner + 2.0 * px)
    if view == "ax":
        convexity = rim & (v > -0.95) if not low_axial else rim & (v > -0.3)
    else:
        convexity = rim & (v < 0.1)
    return Slice(
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
