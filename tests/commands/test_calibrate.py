"""calibrate: one temperature for the class head, fitted on held-out images, applied wherever the file goes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from brain_mtl.commands.main import main
from brain_mtl.evaluation.calibration import calibrated_probs, fit_temperature, undo_temperature
from brain_mtl.evaluation.metrics import negative_log_likelihood
from brain_mtl.inference import Predictor, load_checkpoint
from brain_mtl.models import EnsembleNet
from tests.fixtures import write_checkpoint
from tests.inference.conftest import randomize_batchnorm
from tests.task.conftest import tiny_config


def _overconfident(module, seed: int = 0) -> None:
    """Random BatchNorm statistics and a class head whose logits are 30 times too large."""
    randomize_batchnorm(module, seed)
    last = [m for m in module.model.classification_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    last.weight.mul_(30.0)
    last.bias.mul_(30.0)


@pytest.fixture
def data_root(tiny_datasets):
    return tiny_datasets(48, 12, seed=0)


@pytest.fixture
def overconfident(tmp_path, data_root):
    settings = {"root": str(data_root), "image_size": 32, "keep_aspect": False, "val_fraction": 0.25, "seed": 3}
    return write_checkpoint(tmp_path / "m.ckpt", seed=0, edit=_overconfident, datamodule_hparams=settings)


def test_fit_temperature_recovers_a_known_temperature():
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 4, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator).squeeze(1)
    # A head 3 times too confident: the fitted temperature undoes it.
    assert fit_temperature(true_logits * 3, labels) == pytest.approx(3.0, rel=0.1)
    probs = calibrated_probs(true_logits * 3, 3.0)
    np.testing.assert_allclose(undo_temperature(probs, 3.0), torch.softmax((true_logits * 3).double(), 1), atol=1e-9)
    # Two views: the temperature applies to each, then the views are averaged.
    views = torch.stack([true_logits * 3, true_logits * 3 + 0.01])
    assert fit_temperature(views, labels) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match="at least one image"):
        fit_temperature(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


def test_calibrate_lowers_the_nll_keeps_the_classes_and_writes_a_file_that_predicts_with_it(
    overconfident, tmp_path, capsys
):
    assert main(["calibrate", "--ckpt_path", str(overconfident)]) == 0
    out = tmp_path / "m-calibrated.yaml"
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    content = yaml.safe_load(out.read_text())
    assert content["ensemble"]["members"] == ["m.ckpt"]
    temperature = content["ensemble"]["temperature"]
    before, after = content["calibration"]["before"], content["calibration"]["after"]
    assert temperature > 1  # the head was made over-confident
    assert after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]  # dividing the logits keeps every argmax
    assert content["calibration"]["fitted_on"]["split"] == "val" and content["calibration"]["fitted_on"]["images"] > 0

    # Loaded anywhere a checkpoint goes: the class probabilities are softmax(logits / T), the masks unchanged.
    loaded = load_checkpoint(out)
    assert isinstance(loaded.model, EnsembleNet) and loaded.temperature == pytest.approx(temperature)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    plain = Predictor.from_checkpoint(overconfident, device="cpu")
    calibrated = Predictor.from_checkpoint(out, device="cpu")
    x = plain.preprocessing(image)[None]
    with torch.no_grad():
        logits = plain.model(x).class_logits
    expected = torch.softmax(logits.double() / temperature, 1)[0].numpy()
    np.testing.assert_allclose(calibrated.predict(image).class_probs, expected, atol=1e-5)
    np.testing.assert_allclose(calibrated.predict(image).mask_probs, plain.predict(image).mask_probs, atol=1e-5)


def test_test_with_a_calibrated_file_reports_ece_and_nll_before_and_after(overconfident, tmp_path, data_root):
    assert main(["calibrate", "--ckpt_path", str(overconfident), "--output", str(tmp_path / "cal.yaml")]) == 0
    temperature = yaml.safe_load((tmp_path / "cal.yaml").read_text())["ensemble"]["temperature"]
    overrides = {"data.image_size": 32, "data.val_fraction": 0.25, "data.seed": 3}

    def report(ckpt, out):
        config = tiny_config(data_root, out, overrides=overrides)
        assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt)]) == 0
        return next(out.rglob("report.json")), next(out.rglob("report.md"))

    calibrated_json, calibrated_md = report(tmp_path / "cal.yaml", tmp_path / "calibrated")
    classification = json.loads(calibrated_json.read_text())["classification"]
    cal = classification["calibration"]
    assert cal["temperature"] == pytest.approx(temperature)
    assert cal["after"]["nll"] == pytest.approx(classification["nll"])
    assert "Class head calibrated (temperature" in calibrated_md.read_text()
    # "before" is what the same network scores without the temperature: the plain checkpoint's own figures.
    plain = json.loads(report(overconfident, tmp_path / "plain")[0].read_text())["classification"]
    assert plain["calibration"] is None
    assert cal["before"]["nll"] == pytest.approx(plain["nll"], rel=1e-4)
    assert cal["before"]["ece"] == pytest.approx(plain["ece"], abs=1e-4)
    assert cal["after"]["nll"] < plain["nll"]


def test_a_bad_temperature_is_one_line_naming_the_file(overconfident, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"ensemble": {"members": ["m.ckpt"], "temperature": -1}}))
    scan = tmp_path / "scan.png"
    cv2.imwrite(str(scan), np.zeros((20, 20), np.uint8))
    out = tmp_path / "out"
    assert main(["predict-images", "--ckpt_path", str(bad), "--input", str(scan), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "temperature must be a positive number" in err


def test_negative_log_likelihood_of_known_probabilities():
    probs = np.array([[0.5, 0.5, 0, 0], [0.1, 0.2, 0.3, 0.4]])
    assert negative_log_likelihood(probs, np.array([0, 3])) == pytest.approx(-(np.log(0.5) + np.log(0.4)) / 2)


def test_export_and_the_app_apply_the_temperature(overconfident, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    assert main(["calibrate", "--ckpt_path", str(overconfident), "--output", str(tmp_path / "cal.yaml")]) == 0
    temperature = yaml.safe_load((tmp_path / "cal.yaml").read_text())["ensemble"]["temperature"]
    onnx = tmp_path / "cal.onnx"
    assert main(["export", "--ckpt_path", str(tmp_path / "cal.yaml"), "--output", str(onnx), "--atol", "1e-4"]) == 0
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_temperature"]) == pytest.approx(temperature)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _, class_logits = session.run(None, {"image": x})
    with torch.no_grad():
        plain = load_checkpoint(overconfident).model(torch.from_numpy(x)).class_logits.double()
    np.testing.assert_allclose(
        torch.softmax(torch.from_numpy(class_logits).double(), 1).numpy(),
        torch.softmax(plain / temperature, 1).numpy(),
        atol=1e-4,
    )

    from brain_mtl.app.model import load_app_model

    facts = load_app_model(tmp_path / "cal.yaml", device="cpu").facts
    assert "calibrated" in facts.kind and f"{temperature:.3f}" in facts.kind
