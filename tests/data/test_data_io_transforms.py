from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from brain_mtl.data import DatasetError
from brain_mtl.data.io import read_image, read_mask
from brain_mtl.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_resize,
    build_transforms,
    denormalize,
    to_original_size,
    to_tensor,
)


# ------------------------------------------------------------------------------------------------------------
# read_image / read_mask
# ------------------------------------------------------------------------------------------------------------
def test_read_gray_jpeg_gives_three_equal_channels(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (20, 25, 3) and image.dtype == np.uint8
    assert np.array_equal(image[:, :, 0], gray) and np.array_equal(image[:, :, 2], gray)


def test_read_color_png_is_rgb_order(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), dtype=np.uint8)
    bgr[:, :, 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    image = read_image(tmp_path / "c.png")
    assert image[0, 0].tolist() == [200, 0, 0]


def test_read_rgba_drops_alpha(tmp_path: Path) -> None:
    bgra = np.full((4, 4, 4), 30, dtype=np.uint8)
    bgra[:, :, 0] = 90  # blue
    bgra[:, :, 3] = 0  # fully transparent: the colour is still the image
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    image = read_image(tmp_path / "a.png")
    assert image.shape == (4, 4, 3) and image[0, 0].tolist() == [30, 30, 90]


def test_read_16_bit_scales_to_full_range(tmp_path: Path) -> None:
    raw = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)  # 12-bit MRI values
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    image = read_image(tmp_path / "d.png")
    assert image.dtype == np.uint8
    assert image[:, :, 0].tolist() == [[0, 64], [128, 255]]


def test_read_image_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"broken\.jpg"):
        read_image(bad)
    with pytest.raises(DatasetError, match=r"missing\.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_read_mask_thresholds_noisy_values(tmp_path: Path) -> None:
    values = np.array([[0, 7, 127, 128], [248, 255, 3, 200]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), values)
    mask = read_mask(tmp_path / "m.png")
    assert mask.dtype == np.uint8
    assert mask.tolist() == [[0, 0, 0, 1], [1, 1, 0, 1]]


def test_read_mask_rgb_and_16_bit(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    assert read_mask(tmp_path / "rgb.png").tolist() == [[1, 0], [0, 0]]
    deep = np.array([[0, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert read_mask(tmp_path / "deep.png").tolist() == [[0, 1]]


# ------------------------------------------------------------------------------------------------------------
# Pipelines
# ------------------------------------------------------------------------------------------------------------
def _square_sample(h: int = 60, w: int = 90) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[10:30, 5:40] = 1
    image = np.full((h, w, 3), 40, dtype=np.uint8)
    image[mask == 1] = 230
    return image, mask


@pytest.mark.parametrize("augment", ["none", "light", "default", "strong"])
def test_train_pipeline_keeps_mask_aligned_and_binary(augment: str) -> None:
    image, mask = _square_sample()
    pipeline = build_transforms("train", 48, augment=augment)
    pipeline.set_random_seed(0)
    for _ in range(10):
        out = pipeline(image=image, mask=mask)
        assert out["image"].shape == (48, 48, 3) and out["image"].dtype == np.float32
        assert out["mask"].shape == (48, 48) and set(np.unique(out["mask"])) <= {0, 1}
        bright = denormalize(to_tensor(out["image"]))[:, :, 0].astype(int)
        inside, outside = bright[out["mask"] == 1], bright[out["mask"] == 0]
        # After any flip/rotation, the tumour pixels are still the bright ones.
        assert inside.mean() > outside.mean() + 100


def test_default_train_pipeline_does_augment() -> None:
    image, mask = _square_sample()
    pipeline = build_transforms("train", 48)
    pipeline.set_random_seed(1)
    outs = {pipeline(image=image, mask=mask)["mask"].tobytes() for _ in range(12)}
    assert len(outs) > 1


def test_eval_pipeline_is_deterministic_and_normalized() -> None:
    image, mask = _square_sample()
    pipeline = build_transforms("val", 32)
    a, b = pipeline(image=image, mask=mask), pipeline(image=image, mask=mask)
    assert np.array_equal(a["image"], b["image"])
    background = a["image"][-1, -1]
    expected = (40 / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(background, expected, atol=1e-4)


def test_keep_aspect_pads_instead_of_stretching() -> None:
    image, mask = _square_sample(h=40, w=80)
    out = build_resize(64, keep_aspect=True)(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3)
    # 40x80 -> 32x64 in the middle: 16 black rows above and below.
    assert out["image"][:16].max() == 0 and out["image"][-16:].max() == 0 and out["image"][16:48].min() > 0
    stretched = build_resize(64, keep_aspect=False)(image=image, mask=mask)
    assert stretched["image"][:16].min() > 0


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_to_original_size_undoes_the_resize(keep_aspect: bool) -> None:
    _, mask = _square_sample(h=60, w=90)
    resized = build_resize(64, keep_aspect)(image=np.zeros((60, 90, 3), np.uint8), mask=mask)["mask"]
    back = to_original_size(resized, torch.tensor([60, 90]), keep_aspect, interpolation=cv2.INTER_NEAREST)
    assert back.shape == (60, 90)
    assert (back == mask).mean() > 0.97


def test_denormalize_inverts_normalize() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = build_transforms("test", 16)(image=image)["image"]
    assert np.abs(denormalize(to_tensor(out)).astype(int) - image).max() <= 1
    with pytest.raises(ValueError, match="3, H, W"):
        denormalize(torch.zeros(2, 3, 16, 16))


def test_bad_augment_name() -> None:
    with pytest.raises(ValueError, match="augment"):
        build_transforms("train", 32, augment="extreme")
