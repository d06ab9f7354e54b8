"""ONNX export of the UNet, checked with onnxruntime at two input sizes (dynamic batch, height and width)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from brain_mtl.models import UNet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZES = [(1, 3, 32, 32), (2, 3, 48, 64)]  # the second is not the export size: dynamic axes must work


def _model(attention: bool) -> UNet:
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, attention=attention).train()
    with torch.no_grad():  # non-default BatchNorm statistics, so eval-mode BN is exercised
        model(torch.randn(4, 3, 32, 32))
    return model.eval()


def _check_with_onnxruntime(model: UNet, path) -> None:
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["mask_logits", "class_logits"]
    for size in SIZES:
        x = torch.randn(*size)
        mask_logits, class_logits = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x)
        assert mask_logits.shape == (size[0], 1, size[2], size[3])
        assert class_logits.shape == (size[0], 4)
        np.testing.assert_allclose(mask_logits, expected.mask_logits.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(class_logits, expected.class_logits.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", [False, True])
def test_torchscript_onnx_export_runs_in_onnxruntime(attention, tmp_path):
    model = _model(attention)
    path = tmp_path / "unet.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated in torch 2.9+
        torch.onnx.export(
            model,
            (torch.randn(1, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["mask_logits", "class_logits"],
            dynamic_axes={"image": axes, "mask_logits": axes, "class_logits": {0: "batch"}},
        )
    _check_with_onnxruntime(model, path)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # raised inside torch.export
def test_dynamo_onnx_export_runs_in_onnxruntime(tmp_path):
    model = _model(attention=True)
    path = tmp_path / "unet.onnx"
    stride = model.output_stride
    dim = torch.export.Dim
    dynamic_shapes = {
        "x": {0: dim("batch", min=1, max=256), 2: stride * dim("h", max=512), 3: stride * dim("w", max=512)}
    }
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 32, 32),),
        str(path),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=["image"],
        output_names=["mask_logits", "class_logits"],
    )
    _check_with_onnxruntime(model, path)
