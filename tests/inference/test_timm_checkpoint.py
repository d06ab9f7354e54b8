"""A checkpoint of a UNet on a timm encoder through everything downstream of training.

``load_from_checkpoint``, the Predictor and ``predict-images`` (with Grad-CAM and TTA), Grad-CAM on the deepest
encoder stage, ONNX export with parity and the encoder in the metadata, the state-dict export and its loading,
the refused reference export, and Lightning's ``predict`` with the PredictionWriter.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from brain_mtl import Predictor
from brain_mtl.commands.main import main
from brain_mtl.data.io import read_image
from brain_mtl.inference import load_checkpoint
from brain_mtl.inference.gradcam import GradCAM
from brain_mtl.models import UNet
from tests.inference.conftest import QUICKSTART, TIMM_ENCODER
from tests.inference.helpers import lightning_predict_args, prediction_rows


def _test_images(data_root: Path, count: int | None = None) -> list[Path]:
    images = sorted((data_root / "classification_task" / "test").rglob("*.jpg"))
    assert images, data_root
    return images[:count] if count else images


def test_load_from_checkpoint_restores_the_timm_network(timm_trained):
    from brain_mtl.task.module import BrainTumorModule

    saved = torch.load(timm_trained.ckpt, map_location="cpu", weights_only=True)
    module = BrainTumorModule.load_from_checkpoint(timm_trained.ckpt, map_location="cpu", weights_only=True)
    assert module.hparams.encoder == TIMM_ENCODER
    assert module.model.encoder_name == TIMM_ENCODER and not module.model.is_reference
    assert module.model.output_stride == 32
    assert module.model.normalization == saved["hyper_parameters"]["input_normalization"]
    for key, value in module.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key

    loaded = load_checkpoint(timm_trained.ckpt)
    assert loaded.model.encoder_name == TIMM_ENCODER and not loaded.model.training
    assert loaded.preprocessing.image_size == 64  # from the datamodule's hyperparameters


def test_predict_images_with_gradcam_and_d4_tta(tmp_path, timm_trained):
    images = _test_images(timm_trained.data_root, 3)
    out = tmp_path / "out"
    args = ["predict-images", "--ckpt_path", str(timm_trained.ckpt), "--output", str(out), "--gradcam"]
    assert main([*args, "--tta", "d4", "--input", *map(str, images)]) == 0
    predictor = Predictor.from_checkpoint(timm_trained.ckpt, device="cpu", tta="d4")
    rows = prediction_rows(out / "predictions.csv")
    for path in images:
        row = rows[path.name]
        size = read_image(path).shape[:2]
        assert cv2.imread(str(out / row["mask_file"]), cv2.IMREAD_GRAYSCALE).shape == size
        assert cv2.imread(str(out / f"{row['stem']}_gradcam.png")).shape[:2] == size
        expected = predictor.predict(path)
        for name, value in expected.probabilities.items():
            assert float(row[f"p_{name}"]) == pytest.approx(value, abs=1e-5)
    assert json.loads((out / "predictions.json").read_text())["settings"]["tta"] == "d4"


def test_gradcam_explains_the_deepest_encoder_stage(timm_trained):
    model = load_checkpoint(timm_trained.ckpt).model
    cam = GradCAM(model)
    assert cam.target_layer is model.bottleneck is model.encoder.deepest
    seen: dict[str, tuple[int, ...]] = {}
    handle = model.bottleneck.register_forward_hook(lambda _m, _i, out: seen.update(shape=tuple(out.shape)))
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    try:
        result = cam(x)
    finally:
        handle.remove()
    assert seen["shape"] == (2, model.encoder.channels[-1], 64 // 32, 96 // 32)  # the deepest feature map
    assert result.maps.shape == (2, 64, 96)
    assert float(result.maps.min()) >= 0.0 and float(result.maps.max()) <= 1.0
    torch.testing.assert_close(result.class_logits, model(x).class_logits.detach())
    # A shallower encoder stage by name also works; a decoder layer is refused (the class head never sees it).
    assert GradCAM(model, "encoder.model.blocks.3")(x).maps.shape == (2, 64, 96)
    with pytest.raises(RuntimeError, match="did not run"):
        GradCAM(model, "decoder.0")(x)


def test_onnx_export_has_parity_and_names_the_encoder(tmp_path, timm_trained, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "timm.onnx"
    assert main(["export", "--ckpt_path", str(timm_trained.ckpt), "--output", str(out), "--atol", "1e-4"]) == 0
    assert capsys.readouterr().out.count("max abs diff") == 2
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    model = load_checkpoint(timm_trained.ckpt).model
    assert meta["encoder"] == TIMM_ENCODER
    assert json.loads(meta["encoder_normalization"]) == model.normalization
    # The input is still the pipeline's ImageNet normalisation: the graph applies the encoder's own itself.
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert json.loads(meta["output_stride"]) == 32 and json.loads(meta["image_size"]) == 64

    predictor = Predictor.from_checkpoint(timm_trained.ckpt, device="cpu")
    x = predictor.preprocessing(read_image(_test_images(timm_trained.data_root, 1)[0]))[None]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    mask_logits, class_logits = session.run(None, {"image": x.numpy()})
    mask_probs, class_probs = predictor.forward_probs(x)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(class_logits), 1).numpy(), class_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(mask_logits)).numpy(), mask_probs.numpy(), atol=1e-5)


def test_state_dict_export_loads_into_unet_and_the_predictor(tmp_path, timm_trained, capsys):
    out = tmp_path / "timm.pth"
    assert main(["export", "--ckpt_path", str(timm_trained.ckpt), "--format", "state_dict", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"encoder='{TIMM_ENCODER}'" in printed and "classifier_hidden=16" in printed
    assert "base_channels" not in printed and "depth" not in printed  # they do not apply to a timm encoder

    weights = torch.load(out, weights_only=True)
    assert any(k.startswith("encoder.model.") for k in weights)
    unet = UNet(encoder=TIMM_ENCODER, classifier_hidden=16)
    unet.load_state_dict(weights, strict=True)  # what `UNet(encoder=...)` loads, as the docs say

    image = read_image(_test_images(timm_trained.data_root, 1)[0])
    original = Predictor.from_checkpoint(timm_trained.ckpt, device="cpu").predict(image)
    reloaded = Predictor.from_checkpoint(out, device="cpu", image_size=64).predict(image)
    np.testing.assert_allclose(reloaded.class_probs, original.class_probs, atol=1e-6)
    np.testing.assert_allclose(reloaded.mask_probs, original.mask_probs, atol=1e-6)
    assert load_checkpoint(out).model.encoder_name == TIMM_ENCODER

    # Without the recorded architecture (a plain dict loses _metadata) the loader says what to do.
    bare = tmp_path / "bare.pth"
    torch.save(dict(weights), bare)
    with pytest.raises(ValueError, match=r"timm encoder, without a record of which encoder.*UNet\(encoder=NAME"):
        load_checkpoint(bare)


def test_reference_export_refuses_a_timm_encoder_in_one_line(tmp_path, timm_trained, capsys):
    out = tmp_path / "reference.pth"
    assert main(["export", "--ckpt_path", str(timm_trained.ckpt), "--format", "reference", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: --format reference") and TIMM_ENCODER in err
    assert not out.exists()


def test_lightning_predict_writer_matches_predict_images(tmp_path, timm_trained):
    out_cli = tmp_path / "lightning"
    args = lightning_predict_args(QUICKSTART, timm_trained.ckpt, timm_trained.data_root, out_cli, tmp_path / "run")
    status = main(args)
    assert status == 0
    images = _test_images(timm_trained.data_root)
    lightning_rows = prediction_rows(out_cli / "predictions.csv")
    assert sorted(lightning_rows) == sorted(p.name for p in images)
    out_tool = tmp_path / "tool"
    args = ["predict-images", "--ckpt_path", str(timm_trained.ckpt), "--output", str(out_tool), "--no_overlay"]
    assert main([*args, "--input", *map(str, images)]) == 0
    tool_rows = prediction_rows(out_tool / "predictions.csv")
    for name, row in lightning_rows.items():
        for key in ("p_glioma", "p_meningioma", "p_pituitary", "p_no_tumor"):
            assert float(row[key]) == pytest.approx(float(tool_rows[name][key]), abs=1e-4)
        assert abs(int(row["mask_area_px"]) - int(tool_rows[name]["mask_area_px"])) <= 2
