"""timm encoders under the joint U-Net: every documented family builds, runs, learns and loads local weights."""

from __future__ import annotations

import pytest
import torch

from brain_mtl.models import UNet, UNetOutput
from brain_mtl.models.encoders import PIPELINE_MEAN, PIPELINE_STD, InputAdapter, TimmEncoder

timm = pytest.importorskip("timm")

# One member of each family in docs/models.md (the smallest, so that the suite stays fast on 2 CPU cores).
FAMILIES = ["resnet18", "efficientnet_b0", "convnext_tiny", "regnety_008", "mobilenetv3_large_100"]


@pytest.mark.parametrize("encoder", FAMILIES)
@pytest.mark.parametrize("size", [(256, 256), (64, 160)])
def test_each_family_runs_forward_and_backward_with_unet_output_shapes(encoder, size):
    torch.manual_seed(0)
    model = UNet(encoder=encoder, classifier_hidden=16, attention=encoder == "resnet18")
    images = torch.randn(2, 3, *size)
    out = model(images)
    assert isinstance(out, UNetOutput)
    assert out.mask_logits.shape == (2, 1, *size)  # full resolution, whatever the stem's stride
    assert out.class_logits.shape == (2, 4)
    (out.mask_logits.mean() + out.class_logits.logsumexp(1).mean()).backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in model.final_up.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.classify(images), model(images).class_logits, atol=1e-5)


def test_classify_runs_the_encoder_and_head_only():
    model = UNet(encoder="resnet18", classifier_hidden=8).eval()
    ran = []
    model.decoder[0].register_forward_hook(lambda *_: ran.append("decoder"))
    model.final_up[0].register_forward_hook(lambda *_: ran.append("final_up"))
    model.classify(torch.randn(1, 3, 64, 64))
    assert ran == []


def test_bottleneck_is_the_deepest_feature_map():
    model = UNet(encoder="efficientnet_b0", classifier_hidden=8).eval()
    seen = []
    model.bottleneck.register_forward_hook(lambda _m, _i, out: seen.append(out))
    features = model.encode(torch.randn(1, 3, 64, 64))
    assert seen[0] is features[-1] and features[-1].shape == (1, model.encoder.channels[-1], 2, 2)


def test_a_size_that_the_stride_does_not_divide_names_the_nearest_sizes():
    model = UNet(encoder="resnet18", classifier_hidden=8)
    assert model.output_stride == 32
    with pytest.raises(ValueError, match=r"encoder 'resnet18'.*width 100: nearest valid sizes are 96 or 128"):
        model(torch.randn(1, 3, 64, 100))


def test_unknown_and_unsupported_encoders_are_clear_errors():
    with pytest.raises(ValueError, match="unknown encoder 'resnet999'"):
        UNet(encoder="resnet999")
    with pytest.raises(ValueError, match="encoder_weights applies to timm encoders"):
        UNet(encoder_weights="imagenet")
    with pytest.raises(ValueError, match="no reference-notebook layout"):
        UNet(encoder="resnet18", classifier_hidden=8).reference_state_dict()


def test_weights_from_a_local_file_load_and_change_the_outputs(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18")  # a classification model's state dict, as timm checkpoints hold
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)

    torch.manual_seed(2)
    fresh = UNet(encoder="resnet18", classifier_hidden=8).eval()
    torch.manual_seed(2)
    loaded = UNet(encoder="resnet18", classifier_hidden=8, encoder_weights=path).eval()
    assert torch.equal(loaded.encoder.model.conv1.weight, source.conv1.weight)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(images).mask_logits, loaded(images).mask_logits)


def test_a_safetensors_file_and_an_encoder_state_dict_load_too(tmp_path):
    from safetensors.torch import save_file

    encoder = TimmEncoder("mobilenetv3_large_100")
    save_file(encoder.model.state_dict(), str(tmp_path / "enc.safetensors"))
    other = TimmEncoder("mobilenetv3_large_100", weights=tmp_path / "enc.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), other.state_dict().values(), strict=True)
    )


def test_a_file_for_another_encoder_is_refused_naming_what_is_missing(tmp_path):
    torch.save(timm.create_model("efficientnet_b0").state_dict(), tmp_path / "b0.pth")
    with pytest.raises(ValueError, match=r"does not hold the weights of encoder 'resnet18'.*conv1\.weight"):
        UNet(encoder="resnet18", encoder_weights=tmp_path / "b0.pth")


def test_imagenet_weights_without_network_name_the_offline_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"could not fetch the ImageNet weights of 'resnet18'.*encoder_weights"):
        UNet(encoder="resnet18", encoder_weights="imagenet")


def test_input_adapter_maps_the_pipeline_normalisation_to_the_encoders():
    pixels = torch.rand(2, 3, 8, 8)
    pipeline = (pixels - torch.tensor(PIPELINE_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIPELINE_STD).view(1, 3, 1, 1)
    adapter = InputAdapter(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert torch.allclose(adapter(pipeline), (pixels - 0.5) / 0.5, atol=1e-5)
    to_255 = InputAdapter(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_range=(0, 255))
    assert torch.allclose(to_255(pipeline), pixels * 255, atol=1e-3)
    assert InputAdapter(mean=PIPELINE_MEAN, std=PIPELINE_STD).identity


@pytest.mark.parametrize("encoder", FAMILIES)
def test_state_dict_round_trip_and_onnx_parity(tmp_path, encoder):
    pytest.importorskip("onnxruntime")
    from brain_mtl.inference.export import export_onnx

    torch.manual_seed(3)
    model = UNet(encoder=encoder, classifier_hidden=8).eval()
    clone = UNet(encoder=encoder, classifier_hidden=8).eval()
    clone.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(images)
        assert torch.equal(clone(images).mask_logits, expected.mask_logits)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, (64, 96))
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mask, logits = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    assert abs(mask - expected.mask_logits.numpy()).max() <= 1e-4
    assert abs(logits - expected.class_logits.numpy()).max() <= 1e-4
