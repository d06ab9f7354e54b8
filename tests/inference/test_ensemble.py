"""Ensemble files: the members' averaged probabilities wherever one checkpoint is accepted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from brain_mtl.commands.main import main
from brain_mtl.errors import CheckpointError
from brain_mtl.inference import Predictor, load_checkpoint
from brain_mtl.models import EnsembleNet, UNet
from tests.fixtures import write_checkpoint
from tests.inference.conftest import randomize_batchnorm


@pytest.fixture
def members(tmp_path):
    """Two tiny checkpoints with different weights, and an ensemble file naming them relatively."""
    paths = [
        write_checkpoint(tmp_path / f"m{seed}.ckpt", seed=seed, edit=lambda m, s=seed: randomize_batchnorm(m, s))
        for seed in (0, 1)
    ]
    ensemble = tmp_path / "ensemble.yaml"
    ensemble.write_text(yaml.safe_dump({"ensemble": {"members": [p.name for p in paths]}}))
    return paths, ensemble


def test_the_ensemble_averages_probabilities_not_logits():
    torch.manual_seed(0)
    nets = [UNet(base_channels=4, depth=2, classifier_hidden=8).eval() for _ in range(3)]
    ensemble = EnsembleNet(nets).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ensemble(x)
        mask = torch.stack([torch.sigmoid(n(x).mask_logits) for n in nets]).mean(0)
        cls = torch.stack([torch.softmax(n(x).class_logits, 1) for n in nets]).mean(0)
        torch.testing.assert_close(torch.sigmoid(out.mask_logits), mask, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.softmax(out.class_logits, 1), cls, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.softmax(ensemble.classify(x), 1), cls, atol=1e-5, rtol=1e-5)
        # Not the mean of the logits: that is another (sharper) prediction.
        assert not torch.allclose(out.class_logits, torch.stack([n(x).class_logits for n in nets]).mean(0))
    assert ensemble.output_stride == 4


def test_an_ensemble_file_loads_its_members_and_predicts_their_average(members):
    paths, ensemble = members
    loaded = load_checkpoint(ensemble)
    assert isinstance(loaded.model, EnsembleNet) and loaded.members == tuple(str(p) for p in paths)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    together = Predictor.from_checkpoint(ensemble, device="cpu").predict(image)
    alone = [Predictor.from_checkpoint(p, device="cpu").predict(image) for p in paths]
    np.testing.assert_allclose(together.class_probs, np.mean([a.class_probs for a in alone], axis=0), atol=1e-5)
    np.testing.assert_allclose(together.mask_probs, np.mean([a.mask_probs for a in alone], axis=0), atol=1e-4)


def test_members_that_disagree_are_named_with_the_difference(members, tmp_path):
    paths, _ = members
    other = write_checkpoint(tmp_path / "big.ckpt", seed=2, datamodule_hparams={"image_size": 64, "keep_aspect": False})
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"ensemble": {"members": [str(paths[0]), str(other)]}}))
    with pytest.raises(CheckpointError, match=r"member .*big\.ckpt differs from the first member .* input"):
        load_checkpoint(mixed)
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"ensemble": {"members": ["m0.ckpt", "gone.ckpt"]}}))
    with pytest.raises(CheckpointError, match=r"member checkpoint\(s\) missing: .*gone\.ckpt"):
        load_checkpoint(missing)
    not_one = tmp_path / "config.yaml"
    not_one.write_text("trainer: {max_epochs: 1}\n")
    with pytest.raises(CheckpointError, match="not an ensemble file"):
        load_checkpoint(not_one)


def test_predict_images_export_and_the_app_take_an_ensemble_file(members, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    _, ensemble = members
    scan = tmp_path / "scan.png"
    import cv2

    cv2.imwrite(str(scan), np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8))
    out = tmp_path / "pred"
    assert main(["predict-images", "--ckpt_path", str(ensemble), "--input", str(scan), "--output", str(out)]) == 0
    assert json.loads(next(out.glob("*.json")).read_text())
    onnx = tmp_path / "ensemble.onnx"
    assert main(["export", "--ckpt_path", str(ensemble), "--output", str(onnx), "--atol", "1e-4"]) == 0  # parity
    assert (
        main(["export", "--ckpt_path", str(ensemble), "--output", str(tmp_path / "x.pth"), "--format", "state_dict"])
        == 2
    )
    assert "exports to one ONNX graph" in capsys.readouterr().err

    from brain_mtl.app.model import gradcam_available, load_app_model

    app_model = load_app_model(ensemble, device="cpu")
    assert app_model.facts.kind.startswith("ensemble of 2 checkpoints") and not gradcam_available(app_model.model)
