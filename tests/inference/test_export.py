"""Export: ONNX against PyTorch at two sizes, metadata, state-dict formats, and a clear error without onnx."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from brain_mtl.commands.main import main
from brain_mtl.inference import Predictor
from brain_mtl.inference.export import ONNX_OUTPUTS, check_onnx, export_onnx, parity_error
from brain_mtl.models import UNet
from tests.inference.conftest import randomize_batchnorm

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("attention", [False, True])
def test_onnx_matches_torch_at_two_sizes(tmp_path, attention):
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, classifier_hidden=8, attention=attention)
    randomize_batchnorm(model)
    path = export_onnx(model, tmp_path / "model.onnx", 32)
    diffs = check_onnx(path, model, [(1, 32, 32), (2, 48, 64)])
    assert set(diffs) == {(1, 32, 32), (2, 48, 64)}
    assert max(diffs.values()) <= 1e-4, diffs

    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == list(ONNX_OUTPUTS)
    assert [i.name for i in graph.input] == ["image"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]


def test_dynamo_exporter_also_keeps_sizes_dynamic(tmp_path):
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, classifier_hidden=8)
    randomize_batchnorm(model)
    path = export_onnx(model, tmp_path / "dynamo.onnx", 32, exporter="dynamo")
    assert max(check_onnx(path, model, [(1, 32, 32), (2, 40, 56)]).values()) <= 1e-4


def test_export_command_checks_with_onnxruntime_and_stores_preprocessing(tmp_path, trained, capsys):
    out = tmp_path / "trained.onnx"
    assert main(["export", "--ckpt_path", str(trained.ckpt), "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("max abs diff") == 2  # two input sizes compared
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["image_size"] == "64"
    assert "glioma" in meta["class_names"]

    # The exported graph gives the Predictor's probabilities on a real image.
    import onnxruntime as ort

    predictor = Predictor.from_checkpoint(trained.ckpt, device="cpu")
    image_path = next((trained.data_root / "classification_task" / "test" / "glioma").iterdir())
    from brain_mtl.data.io import read_image

    x = predictor.preprocessing(read_image(image_path))[None]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    mask_logits, class_logits = session.run(None, {"image": x.numpy()})
    mask_probs, class_probs = predictor.forward_probs(x)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(class_logits), 1).numpy(), class_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(mask_logits)).numpy(), mask_probs.numpy(), atol=1e-5)


@pytest.mark.parametrize("fmt", ["state_dict", "reference"])
def test_state_dict_exports_load_back(tmp_path, tiny_ckpt, fmt):
    out = tmp_path / f"{fmt}.pth"
    assert main(["export", "--ckpt_path", str(tiny_ckpt), "--format", fmt, "--output", str(out)]) == 0
    weights = torch.load(out, weights_only=True)
    prefix = "encoder.0." if fmt == "state_dict" else "inc."
    assert any(k.startswith(prefix) for k in weights)

    original = Predictor.from_checkpoint(tiny_ckpt, device="cpu")
    reloaded = Predictor.from_checkpoint(out, device="cpu", image_size=32)
    image = np.random.default_rng(0).integers(0, 256, (40, 52), dtype=np.uint8)
    a, b = original.predict(image), reloaded.predict(image)
    np.testing.assert_allclose(a.class_probs, b.class_probs, atol=1e-6)
    np.testing.assert_allclose(a.mask_probs, b.mask_probs, atol=1e-6)
    if fmt == "reference":
        rebuilt = UNet.from_reference(out)
        assert (rebuilt.base_channels, rebuilt.depth) == (4, 2)


def test_missing_onnx_package_says_how_to_install(tmp_path, tiny_ckpt, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"brain-mtl\[export\]"):
        export_onnx(UNet(base_channels=4, depth=2), tmp_path / "x.onnx", 32)
    status = main(["export", "--ckpt_path", str(tiny_ckpt), "--format", "onnx", "--output", str(tmp_path / "y.onnx")])
    assert status == 1
    assert "brain-mtl[export]" in capsys.readouterr().err


def test_export_rejects_a_size_the_network_cannot_take(tmp_path, tiny_ckpt, capsys):
    args = ["export", "--ckpt_path", str(tiny_ckpt), "--output", str(tmp_path / "z.onnx"), "--image_size", "30"]
    assert main(args) == 2
    assert "multiple of 4" in capsys.readouterr().err
    # A height and a width; three sides are a usage error too.
    assert main([*args[:-1], "32", "44", "12"]) == 2
    assert "one side or a height and a width" in capsys.readouterr().err


def test_export_takes_a_height_and_a_width_and_can_skip_the_check(tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "hw.onnx"
    args = ["export", "--ckpt_path", str(tiny_ckpt), "--output", str(out), "--image_size", "32", "48", "--no_check"]
    assert main(args) == 0
    assert out.is_file() and "max abs diff" not in capsys.readouterr().out


def test_parity_check_fails_when_outputs_are_not_finite(tmp_path):
    # NaN in one output only (the class head): the mask logits still agree. Python's max() and `diff > atol`
    # let such a NaN through; the check must not.
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, classifier_hidden=8).eval()
    with torch.no_grad():
        model.classification_head.mlp[3].bias.fill_(float("nan"))
    path = export_onnx(model, tmp_path / "nan.onnx", 32)
    diffs = check_onnx(path, model, [(1, 32, 32)])
    assert np.isnan(diffs[(1, 32, 32)])
    problem = parity_error(diffs, 1e-3)
    assert problem is not None and "not finite" in problem and "(1, 3, 32, 32)" in problem


def test_parity_error_passes_only_finite_differences_within_tolerance():
    assert parity_error({(1, 32, 32): 1e-5, (2, 48, 64): 2e-5}, 1e-3) is None
    assert "exceeds --atol" in parity_error({(1, 32, 32): 1e-5, (2, 48, 64): 0.5}, 1e-3)
    assert "not finite" in parity_error({(1, 32, 32): float("inf")}, 1e-3)
    assert parity_error({}, 1e-3) is not None


def test_export_command_fails_on_a_network_that_overflows(tmp_path, tiny_ckpt, capsys):
    from tests.inference.helpers import overflow_checkpoint

    ckpt = tmp_path / "overflow.ckpt"
    overflow_checkpoint(ckpt, tiny_ckpt)  # finite weights, so it loads; class logits are +inf on every input
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "onnx", "--output", str(tmp_path / "o.onnx")]) == 1
    err = capsys.readouterr().err
    assert "parity check failed" in err and "not finite" in err


def test_metadata_is_strict_json(tmp_path):
    path = tmp_path / "meta.onnx"
    with pytest.raises(ValueError, match="'mask_threshold' = nan is not finite"):
        export_onnx(UNet(base_channels=4, depth=2), path, 32, metadata={"mask_threshold": float("nan")})
    assert not path.exists()
    export_onnx(UNet(base_channels=4, depth=2), path, 32, metadata={"mean": [0.485, 0.456], "keep_aspect": False})
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta == {"mean": "[0.485, 0.456]", "keep_aspect": "false"}
