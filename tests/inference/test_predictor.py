"""The Python API: masks at the original size, letterbox undone, batching, TTA, checkpoint formats."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from brain_mtl import Predictor
from brain_mtl.classes import CLASS_NAMES
from brain_mtl.data.errors import DatasetError
from brain_mtl.inference import Preprocessing, load_checkpoint
from tests.inference.helpers import BrightnessSegmenter, LopsidedNet


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max(1, (a | b).sum()))


def _scan_with_box(height: int, width: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[rows, cols] = 255
    truth = np.zeros((height, width), dtype=np.uint8)
    truth[rows, cols] = 1
    return image, truth


@pytest.mark.parametrize("keep_aspect", [True, False])
@pytest.mark.parametrize(("height", "width"), [(60, 150), (170, 48)])
def test_non_square_mask_lands_on_the_object(keep_aspect, height, width):
    # The object sits off-centre in a non-square image; a mask resized back without removing the letterbox
    # padding would be squeezed towards the centre and miss it.
    rows = slice(height // 3, height // 3 + max(8, height // 4))
    cols = slice(width - width // 4 - 6, width - 6)
    image, truth = _scan_with_box(height, width, rows, cols)
    predictor = Predictor(BrightnessSegmenter(), Preprocessing(64, keep_aspect=keep_aspect), device="cpu")
    result = predictor.predict(image)
    assert result.mask.shape == (height, width)
    assert result.mask_probs.shape == (height, width)
    assert _iou(result.mask, truth) > 0.8


def test_letterbox_changes_where_the_mask_goes():
    # Guard for the test above: reading a letterboxed output as if it were stretched must go wrong.
    image, truth = _scan_with_box(60, 150, slice(5, 20), slice(110, 140))
    letterboxed = Predictor(BrightnessSegmenter(), Preprocessing(64, keep_aspect=True), device="cpu")
    mask_probs, _ = letterboxed.forward_probs(letterboxed.preprocessing(image)[None])
    wrong = Preprocessing(64, keep_aspect=False).restore(mask_probs[0, 0], (60, 150)) > 0.5
    assert _iou(wrong, truth) < 0.5


def test_predict_accepts_paths_and_arrays_and_batches_agree(tmp_path, tiny_ckpt):
    predictor = Predictor.from_checkpoint(tiny_ckpt, device="cpu")
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (45, 71), dtype=np.uint8)
    rgb = rng.integers(0, 255, (90, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    from_path = predictor.predict(tmp_path / "gray.png")
    from_array = predictor.predict(gray)
    assert from_path.mask.shape == (45, 71)
    np.testing.assert_allclose(from_path.mask_probs, from_array.mask_probs, atol=1e-6)
    assert from_path.class_name in CLASS_NAMES
    assert from_path.class_name == CLASS_NAMES[int(np.argmax(from_path.class_probs))]
    assert sum(from_path.probabilities.values()) == pytest.approx(1.0, abs=1e-5)

    singles = [predictor.predict(p) for p in (tmp_path / "gray.png", tmp_path / "rgb.png")]
    batch = predictor.predict_batch([tmp_path / "gray.png", tmp_path / "rgb.png"], batch_size=2)
    assert [b.size for b in batch] == [(45, 71), (90, 40)]
    for one, many in zip(singles, batch, strict=True):
        np.testing.assert_allclose(one.class_probs, many.class_probs, atol=1e-5)
        np.testing.assert_allclose(one.mask_probs, many.mask_probs, atol=1e-5)


def test_unreadable_file_raises_naming_it_or_is_skipped(tmp_path, tiny_ckpt):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    predictor = Predictor.from_checkpoint(tiny_ckpt, device="cpu")
    with pytest.raises(DatasetError, match=r"broken\.jpg"):
        predictor.predict(broken)
    good = np.zeros((20, 20), dtype=np.uint8)
    results = list(predictor.iter_predict([good, broken, good], errors="skip"))
    assert [type(r).__name__ for r in results] == ["Prediction", "Failure", "Prediction"]
    assert "broken.jpg" in results[1].source


def test_tta_averages_the_image_and_its_mirror():
    model = LopsidedNet()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    plain = Predictor(model, Preprocessing(32), device="cpu")
    tta = Predictor(model, Preprocessing(32), device="cpu", tta=True)
    x = plain.preprocessing(image)[None]

    mask_tta, class_tta = tta.forward_probs(x)
    with torch.no_grad():
        direct, mirrored = model(x), model(x.flip(-1))
    expected_mask = (torch.sigmoid(direct.mask_logits) + torch.sigmoid(mirrored.mask_logits).flip(-1)) / 2
    expected_class = (torch.softmax(direct.class_logits, 1) + torch.softmax(mirrored.class_logits, 1)) / 2
    torch.testing.assert_close(mask_tta, expected_mask)
    torch.testing.assert_close(class_tta, expected_class)
    # The column ramp cancels out: averaged masks are mirror-symmetric apart from the image's own asymmetry.
    mask_plain, _ = plain.forward_probs(x)
    assert not torch.allclose(mask_plain, mask_tta, atol=1e-3)
    assert (tta.predict(image).mask_probs - tta.predict(image[:, ::-1]).mask_probs[:, ::-1]).max() < 1e-5


def test_mask_gate_empties_masks_of_no_tumour_predictions():
    class HealthyNet(BrightnessSegmenter):
        def forward(self, x):
            out = super().forward(x)
            return out._replace(class_logits=torch.tensor([0.0, 0.0, 0.0, 5.0]).expand(x.shape[0], -1))

    image, _ = _scan_with_box(40, 40, slice(10, 20), slice(10, 20))
    assert Predictor(HealthyNet(), Preprocessing(32), device="cpu").predict(image).mask_area > 0
    gated = Predictor(HealthyNet(), Preprocessing(32), device="cpu", mask_gate=True).predict(image)
    assert gated.class_name == "no_tumor"
    assert gated.mask_area == 0


def test_checkpoint_settings_are_read_and_overridable(tmp_path):
    from tests.inference.conftest import write_lightning_checkpoint

    path = write_lightning_checkpoint(tmp_path / "letterbox.ckpt", image_size=48, keep_aspect=True)
    loaded = load_checkpoint(path)
    assert loaded.preprocessing == Preprocessing(48, keep_aspect=True)
    assert loaded.mask_threshold == 0.5
    assert not loaded.model.training
    overridden = Predictor.from_checkpoint(path, device="cpu", image_size=32, keep_aspect=False, mask_threshold=0.7)
    assert overridden.preprocessing == Preprocessing(32, keep_aspect=False)
    assert overridden.mask_threshold == 0.7
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_bf16_precision_stays_close_to_fp32(tiny_ckpt):
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    fp32 = Predictor.from_checkpoint(tiny_ckpt, device="cpu").predict(image)
    bf16 = Predictor.from_checkpoint(tiny_ckpt, device="cpu", precision="bf16").predict(image)
    assert bf16.mask_probs.dtype == np.float32
    assert np.abs(fp32.class_probs - bf16.class_probs).max() < 0.05
    assert np.abs(fp32.mask_probs - bf16.mask_probs).max() < 0.05
    with pytest.raises(ValueError, match="precision"):
        Predictor.from_checkpoint(tiny_ckpt, device="cpu", precision="fp8")


def test_non_finite_outputs_fail_that_image_only():
    # A network that returns NaN for bright images: no NaN probabilities or silently empty masks come out.
    from brain_mtl.inference import Failure, NonFiniteOutputError
    from tests.inference.helpers import NaNOnBrightImages

    dark, bright = np.zeros((20, 30), dtype=np.uint8), np.full((20, 30), 255, dtype=np.uint8)
    predictor = Predictor(NaNOnBrightImages(), Preprocessing(32), device="cpu", batch_size=3)
    results = list(predictor.iter_predict([dark, bright, dark], errors="skip"))
    assert [type(r).__name__ for r in results] == ["Prediction", "Failure", "Prediction"]
    assert isinstance(results[1], Failure) and results[1].source == "array_1"
    assert "not finite" in results[1].error
    assert all(np.isfinite(r.class_probs).all() for r in results[::2])
    with pytest.raises(NonFiniteOutputError, match="class probabilities are not finite"):
        predictor.predict(bright)
    with pytest.raises(NonFiniteOutputError):
        predictor.predict_batch([dark, bright])
