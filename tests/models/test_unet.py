"""UNet behaviour in the manner of smp's tests/models/base.py: shapes, gradients, input checks, paths, precision."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from brain_mtl.models import UNet, UNetOutput
from brain_mtl.models.blocks import AttentionGate, PassThroughGate

# (depth, base_channels, attention): shallow and deep, with and without gates; tiny so that CPU runs fast.
CONFIGS = [(1, 4, False), (2, 8, True), (3, 4, True), (4, 4, False), (4, 4, True)]


def _tiny(depth: int = 2, base_channels: int = 4, attention: bool = False, **kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=base_channels, depth=depth, attention=attention, **kwargs)


def _biases_before_batchnorm(model: nn.Module) -> set[str]:
    """Biases of convolutions that feed a BatchNorm directly.

    In training mode BatchNorm subtracts the batch mean, which removes any constant the bias adds: their gradient
    is exactly zero in exact arithmetic, and only rounding makes it non-zero (or not: with one torch thread on an
    AVX-512 CPU, ``decoder.1.gate.psi.0.bias`` comes out 0.0).
    """
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, layer), (_, following) in itertools.pairwise(children):
                if isinstance(layer, nn.Conv2d) and layer.bias is not None and isinstance(following, nn.BatchNorm2d):
                    names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


@pytest.mark.parametrize(("depth", "base_channels", "attention"), CONFIGS)
def test_forward_backward_shapes_and_gradients(depth, base_channels, attention):
    model = _tiny(depth, base_channels, attention, num_classes=5)
    x = torch.randn(2, 3, 32, 64)

    out = model(x)

    assert isinstance(out, UNetOutput)
    assert out.mask_logits.shape == (2, 1, 32, 64)
    assert out.class_logits.shape == (2, 5)
    (out.mask_logits.mean() + out.class_logits.logsumexp(1).mean()).backward()
    # Every parameter is connected to the loss; all but the BatchNorm-cancelled biases get a non-zero gradient.
    cancelled = _biases_before_batchnorm(model)
    assert cancelled and cancelled < set(dict(model.named_parameters()))
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or (name not in cancelled and not p.grad.abs().sum() > 0)
    ]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("depth", "base_channels", "attention"), CONFIGS)
def test_structure_follows_arguments(depth, base_channels, attention):
    model = _tiny(depth, base_channels, attention)

    assert model.output_stride == 2**depth
    assert len(model.encoder) == depth + 1
    assert len(model.decoder) == depth
    gate_type = AttentionGate if attention else PassThroughGate
    assert all(type(stage.gate) is gate_type for stage in model.decoder)
    features = model.encode(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape) for f in features] == [
        (1, base_channels * 2**i, 32 // 2**i, 32 // 2**i) for i in range(depth + 1)
    ]


def test_attention_gate_uses_half_the_skip_channels_and_the_upsampled_gate():
    model = _tiny(depth=2, base_channels=8, attention=True)
    gate = model.decoder[0].gate  # skip: encoder[1] output, 16 channels
    assert gate.skip_proj[0].in_channels == 16
    assert gate.gate_proj[0].in_channels == 16
    assert gate.skip_proj[0].out_channels == 8
    assert gate.psi[0].out_channels == 1

    # The gate must act on the output: a very negative psi shift drives sigmoid to 0, switching skips off.
    model.eval()
    x = torch.randn(1, 3, 16, 16)
    before = model(x).mask_logits
    with torch.no_grad():
        for stage in model.decoder:
            stage.gate.psi[1].bias.fill_(-30.0)  # sigmoid -> 0: skips switched off
    after = model(x).mask_logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_classify_matches_forward_in_eval_and_skips_the_decoder():
    model = _tiny(depth=3, base_channels=4, attention=True).eval()
    x = torch.randn(3, 3, 32, 32)
    calls: list[str] = []
    decoder_parts = [("decoder", model.decoder), ("segmentation_head", model.segmentation_head)]
    decoder_parts += [(f"decoder.{name}", m) for name, m in model.decoder.named_modules() if name]
    handles = [m.register_forward_hook(lambda *_, n=name: calls.append(n)) for name, m in decoder_parts]
    # decoder is a ModuleList (never called itself), so count its stages and their children.
    handles += [stage.register_forward_pre_hook(lambda *_: calls.append("stage")) for stage in model.decoder]

    with torch.no_grad():
        class_only = model.classify(x)
    assert calls == []

    with torch.no_grad():
        full = model(x)
    assert "stage" in calls and "segmentation_head" in calls  # the hooks do fire when the decoder runs
    for handle in handles:
        handle.remove()
    assert class_only.shape == (3, 4)
    torch.testing.assert_close(class_only, full.class_logits, rtol=0, atol=1e-6)


def test_classify_costs_the_encoder_only():
    from torch.utils.flop_counter import FlopCounterMode

    model = _tiny(depth=3, base_channels=4).eval()
    x = torch.randn(1, 3, 32, 32)

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            fn(x)
        return counter.get_total_flops()

    encoder_flops = flops(lambda t: model.encode(t))
    classify_flops = flops(model.classify)
    forward_flops = flops(model)
    head_flops = 2 * (32 * 256 + 256 * 4)  # the two Linear layers, multiply-adds counted as 2
    assert classify_flops == encoder_flops + head_flops
    assert forward_flops > 2 * classify_flops  # the decoder is at least as heavy as the encoder


def test_bottleneck_is_last_encoder_stage_and_feeds_the_head():
    model = _tiny(depth=2, base_channels=4).eval()
    assert model.bottleneck is model.encoder[-1]
    captured = {}
    model.bottleneck.register_forward_hook(lambda _m, _i, out: captured.setdefault("out", out))
    with torch.no_grad():
        logits = model.classify(torch.randn(2, 3, 16, 16))
        assert captured["out"].shape == (2, 16, 4, 4)
        torch.testing.assert_close(model.classification_head(captured["out"]), logits)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(30, 32, "28 or 32"), (32, 33, "32 or 36"), (2, 32, "4"), (31, 31, "28 or 32")],
)
def test_sides_not_divisible_name_the_nearest_valid_sizes(height, width, expected):
    model = _tiny(depth=2)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 4") as info:
        model(torch.randn(1, 3, height, width))
    assert f"nearest valid sizes are {expected}" in str(info.value)
    with pytest.raises(ValueError, match="divisible"):
        model.classify(torch.randn(1, 3, height, width))


def test_wrong_channel_count_and_rank_are_explained():
    model = _tiny(depth=2)
    with pytest.raises(ValueError, match="built for 3-channel input but got 1 channels") as info:
        model(torch.randn(2, 1, 16, 16))
    assert "in_channels=1" in str(info.value)
    with pytest.raises(ValueError, match="got 4 channels"):
        model.classify(torch.randn(2, 4, 16, 16))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(3, 16, 16))
    gray = _tiny(depth=2, in_channels=1)
    assert gray(torch.randn(1, 1, 16, 16)).mask_logits.shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": 0}, {"base_channels": 0}, {"num_classes": 0}, {"in_channels": 2.5}, {"classifier_dropout": 1.0}],
)
def test_invalid_constructor_arguments_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        UNet(**kwargs)


def test_classification_head_configuration():
    model = _tiny(depth=2, base_channels=4, classifier_hidden=7, classifier_dropout=0.25)
    linear1, _, dropout, linear2 = model.classification_head.mlp
    assert (linear1.in_features, linear1.out_features) == (16, 7)
    assert (linear2.in_features, linear2.out_features) == (7, 4)
    assert dropout.p == 0.25
    # Dropout is active in training mode only.
    x = torch.randn(4, 3, 16, 16)
    model.train()
    torch.manual_seed(1)
    a = model.classify(x)
    torch.manual_seed(2)
    b = model.classify(x)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model.classify(x), model.classify(x), rtol=0, atol=0)


def test_state_dict_round_trip_through_a_file(tmp_path):
    model = _tiny(depth=3, base_channels=4, attention=True)
    model.train()
    model(torch.randn(2, 3, 32, 32))  # move the BatchNorm running statistics away from their defaults
    model.eval()
    path = tmp_path / "unet.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(123)
    loaded = UNet(base_channels=4, depth=3, attention=True)
    loaded.load_state_dict(torch.load(path, weights_only=True))
    loaded.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("attention", [False, True])
def test_cpu_bf16_autocast_is_finite_and_close_to_fp32(attention):
    model = _tiny(depth=3, base_channels=8, attention=attention).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.mask_logits.dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    for ref, out in zip(reference, low, strict=True):
        assert torch.isfinite(out).all()
        scale = ref.abs().max()
        assert (out.float() - ref).abs().max() <= 0.05 * scale + 1e-3

    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        loss = out.mask_logits.float().mean() + out.class_logits.float().logsumexp(1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("attention", [False, True])
def test_cuda_fp16_autocast_is_finite(attention):
    model = _tiny(depth=3, base_channels=8, attention=attention).cuda()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x)
        loss = out.mask_logits.float().mean() + out.class_logits.float().logsumexp(1).mean()
    assert out.mask_logits.dtype == torch.float16
    loss.backward()
    assert all(torch.isfinite(t).all() for t in out)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("attention", [False, True])
def test_channels_last_gives_the_same_outputs_and_gradients(attention):
    model = _tiny(depth=2, base_channels=8, attention=attention)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(7)  # same dropout mask in both runs
    out = model(x)
    (out.mask_logits.sum() + out.class_logits.sum()).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(7)
    out_cl = model(x.to(memory_format=torch.channels_last))
    (out_cl.mask_logits.sum() + out_cl.class_logits.sum()).backward()

    assert model.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(out, out_cl, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Summation order differs between memory formats, and the biases of convolutions followed by BatchNorm
    # have a true gradient of 0 (pure rounding noise): compare the whole gradient, relative to its norm.
    expected = torch.cat([grads[name].flatten() for name, _ in model.named_parameters()])
    got = torch.cat([p.grad.flatten() for _, p in model.named_parameters()])
    assert (got - expected).norm() <= 1e-4 * expected.norm()


def test_models_package_does_not_import_lightning_or_data_code():
    import subprocess
    import sys

    code = (
        "import sys, brain_mtl.models; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'lightning', 'pytorch_lightning', "
        "'albumentations', 'cv2'} or m.startswith('brain_mtl.data')); print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_is_a_plain_module_usable_in_sequential_code():
    model = _tiny(depth=1)
    assert isinstance(model, nn.Module)
    assert type(model).__mro__[1] is nn.Module
