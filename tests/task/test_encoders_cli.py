"""A timm encoder through the whole command line: fit from a local weights file, resume, test, predict, export."""

from __future__ import annotations

import json

import pytest
import torch

from brain_mtl.commands.main import main
from tests.task.conftest import state_dict_of

timm = pytest.importorskip("timm")


@pytest.fixture
def resnet18_weights(tmp_path):
    """ImageNet-shaped resnet18 weights written by the test (nothing is downloaded)."""
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    return path


def test_timm_encoder_fits_tests_predicts_and_exports_with_parity(make_config, tiny_root, tmp_path, resnet18_weights):
    overrides = {
        "model.encoder": "resnet18",
        "model.encoder_weights": str(resnet18_weights),
        "model.encoder_lr_multiplier": 0.1,
        "model.freeze_encoder_epochs": 1,
        "model.warmup_epochs": 0.5,
    }
    run = tmp_path / "run"
    start = torch.load(resnet18_weights, weights_only=True)
    assert main(["fit", "--config", str(make_config(run, epochs=1, overrides=overrides))]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    frozen = state_dict_of(ckpt)
    # Frozen in epoch 0: the encoder's weights and BatchNorm statistics are still the file's.
    assert torch.equal(frozen["model.encoder.model.conv1.weight"], start["conv1.weight"])
    assert torch.equal(frozen["model.encoder.model.bn1.running_mean"], start["bn1.running_mean"])
    resumed = make_config(run, epochs=2, overrides=overrides)
    assert main(["fit", "--config", str(resumed), "--ckpt_path", "last"]) == 0
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["encoder"] == "resnet18"
    assert saved["hyper_parameters"]["input_normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    weights = state_dict_of(ckpt)
    # Trained in epoch 1: the encoder moved away from the file's weights.
    assert saved["epoch"] == 1
    assert not torch.equal(weights["model.encoder.model.conv1.weight"], start["conv1.weight"])
    groups = {g["name"]: g for g in saved["optimizer_states"][0]["param_groups"]}
    assert set(groups) == {"decoder_and_heads", "encoder"}
    assert groups["encoder"]["initial_lr"] == pytest.approx(0.1 * groups["decoder_and_heads"]["initial_lr"])

    # test with a config that does not name the encoder: the checkpoint's is used.
    assert main(["test", "--config", str(make_config(tmp_path / "test")), "--ckpt_path", str(ckpt)]) == 0
    report = json.loads(next((tmp_path / "test").rglob("report.json")).read_text())
    assert report["meta"]["data_synthetic"] is True

    scan = next((tiny_root / "segmentation_task" / "test" / "images").iterdir())
    out = tmp_path / "pred"
    assert main(["predict-images", "--ckpt_path", str(ckpt), "--input", str(scan), "--output", str(out)]) == 0
    assert any(out.rglob("*.png"))

    onnx = tmp_path / "model.onnx"
    assert main(["export", "--ckpt_path", str(ckpt), "--output", str(onnx), "--atol", "1e-4"]) == 0
    assert onnx.is_file()
