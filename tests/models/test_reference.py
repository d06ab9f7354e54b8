"""The reference notebook's weights: layout, parameter counts, equivalence and safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brain_mtl.models import UNet

# Keys and shapes of the notebook's CustomUNet state dicts ("plain" and "attention").
SEED = json.loads((Path(__file__).parent / "reference_state_dict_keys.json").read_text())
VARIANTS = [("plain", False), ("attention", True)]


# --- An independent network written in the notebook's layout (attribute names inc/down1/up1/...). -----------
class _NotebookDoubleConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.conv(x)


class _NotebookAttentionBlock(nn.Module):
    def __init__(self, F_g: int, F_l: int, F_int: int) -> None:
        super().__init__()
        self.W_g = nn.Sequential(nn.Conv2d(F_g, F_int, 1), nn.BatchNorm2d(F_int))
        self.W_x = nn.Sequential(nn.Conv2d(F_l, F_int, 1), nn.BatchNorm2d(F_int))
        self.psi = nn.Sequential(nn.Conv2d(F_int, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g, x):
        psi = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return x * psi


class _NotebookUNet(nn.Module):
    def __init__(self, attention: bool = False, n_classes: int = 4, base: int = 64) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (base * 2**i for i in range(5))
        self.attention = attention
        self.inc = _NotebookDoubleConv(3, c1)
        self.down1 = nn.Sequential(nn.MaxPool2d(2), _NotebookDoubleConv(c1, c2))
        self.down2 = nn.Sequential(nn.MaxPool2d(2), _NotebookDoubleConv(c2, c3))
        self.down3 = nn.Sequential(nn.MaxPool2d(2), _NotebookDoubleConv(c3, c4))
        self.down4 = nn.Sequential(nn.MaxPool2d(2), _NotebookDoubleConv(c4, c5))
        self.classifier = nn.Sequential(nn.Linear(c5, 256), nn.ReLU(), nn.Dropout(0.6), nn.Linear(256, n_classes))
        for i, (deep, skip) in enumerate([(c5, c4), (c4, c3), (c3, c2), (c2, c1)], start=1):
            setattr(self, f"up{i}", nn.ConvTranspose2d(deep, skip, 2, stride=2))
            if attention:
                setattr(self, f"att{i}", _NotebookAttentionBlock(skip, skip, skip // 2))
            setattr(self, f"conv_up{i}", _NotebookDoubleConv(2 * skip, skip))
        self.outc = nn.Conv2d(c1, 1, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        class_logits = self.classifier(F.adaptive_avg_pool2d(x5, 1).flatten(1))
        d = x5
        for i, skip in enumerate([x4, x3, x2, x1], start=1):
            d = getattr(self, f"up{i}")(d)
            if self.attention:
                skip = getattr(self, f"att{i}")(g=d, x=skip)
            d = getattr(self, f"conv_up{i}")(torch.cat([skip, d], dim=1))
        return self.outc(d), class_logits


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics (so eval mode is tested)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.num_batches_tracked.fill_(17)


@pytest.fixture(scope="module", params=VARIANTS, ids=[name for name, _ in VARIANTS])
def notebook_net(request):
    name, attention = request.param
    torch.manual_seed(0)
    net = _NotebookUNet(attention=attention)
    _randomize_batchnorm(net, seed=1)
    return name, attention, net


# --- Tests. --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "attention", "count"), [("plain", False, 31_306_949), ("attention", True, 31_658_481)]
)
def test_default_network_is_the_reference_parameter_for_parameter(variant, attention, count):
    model = UNet(attention=attention)
    assert sum(p.numel() for p in model.parameters()) == count
    reference = model.reference_state_dict()
    # Same keys, in the notebook's order, with the same shapes.
    assert list(reference) == list(SEED[variant])
    assert {k: list(v.shape) for k, v in reference.items()} == SEED[variant]


def test_test_network_matches_the_notebook_layout(notebook_net):
    # Guards the independent network itself: it must be the notebook's layout, or the next tests prove nothing.
    variant, _, net = notebook_net
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == SEED[variant]


def test_same_weights_give_the_same_outputs_as_the_notebook_network(notebook_net):
    _, attention, net = notebook_net
    model = UNet.from_reference(net.state_dict())
    assert model.attention is attention
    net.eval()
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected_mask, expected_class = net(x)
        out = model(x)
        class_only = model.classify(x)
    assert expected_mask.abs().max() > 1e-3  # a non-trivial output, so the comparison means something
    assert (out.mask_logits - expected_mask).abs().max() <= 1e-5
    assert (out.class_logits - expected_class).abs().max() <= 1e-5
    assert (class_only - expected_class).abs().max() <= 1e-5


def test_same_weights_give_the_same_training_step_as_the_notebook_network():
    # Training mode: BatchNorm uses batch statistics and updates running ones; dropout draws from the RNG once in
    # both networks, so a shared seed gives the same mask. Small channels keep this cheap.
    torch.manual_seed(3)
    net = _NotebookUNet(attention=True, base=4)
    _randomize_batchnorm(net, seed=4)
    model = UNet.from_reference(net.state_dict())
    x = torch.randn(4, 3, 32, 32)
    outputs = []
    for network in (net, model):
        torch.manual_seed(5)
        mask_logits, class_logits = network(x)
        (mask_logits.square().mean() + class_logits.logsumexp(1).mean()).backward()
        outputs.append((mask_logits, class_logits))
    for a, b in zip(*outputs, strict=True):
        assert (a - b).abs().max() <= 1e-5
    ours = model.reference_state_dict()
    for key, value in net.state_dict().items():  # running statistics moved the same way
        torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-6)
    grads = dict(net.named_parameters())
    translated = model.reference_state_dict(keep_vars=True)
    for key, param in grads.items():
        torch.testing.assert_close(translated[key].grad, param.grad, rtol=1e-4, atol=1e-6)


def test_reference_round_trip_is_identity(notebook_net):
    _, _, net = notebook_net
    original = net.state_dict()
    back = UNet.from_reference(original).reference_state_dict()
    assert list(back) == list(original)
    assert all(torch.equal(back[k], original[k]) and back[k].dtype == original[k].dtype for k in original)


@pytest.mark.parametrize(("depth", "base_channels", "attention"), [(2, 4, True), (3, 8, False)])
def test_other_configurations_round_trip_and_are_inferred(depth, base_channels, attention, tmp_path):
    torch.manual_seed(0)
    model = UNet(depth=depth, base_channels=base_channels, attention=attention, num_classes=3, classifier_hidden=9)
    path = tmp_path / "weights.pth"
    torch.save(model.reference_state_dict(), path)

    loaded = UNet.from_reference(path, classifier_dropout=0.1)

    assert (loaded.depth, loaded.base_channels, loaded.attention) == (depth, base_channels, attention)
    assert (loaded.num_classes, loaded.classification_head.mlp[0].out_features) == (3, 9)
    assert loaded.classification_head.mlp[2].p == 0.1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_loads_from_a_file_and_from_dataparallel_keys(tmp_path):
    torch.manual_seed(0)
    net = _NotebookUNet(attention=False, base=4)
    path = tmp_path / "notebook.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = UNet.from_reference(str(path))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.reference_state_dict()[key], value)


def test_weights_that_do_not_fit_are_refused_naming_the_keys():
    state = _NotebookUNet(attention=True, base=4).state_dict()
    del state["outc.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["up2.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="do not fit") as info:
        UNet.from_reference(state)
    message = str(info.value)
    assert "1 missing keys (first: outc.bias)" in message
    assert "1 unexpected keys (first: extra.weight)" in message
    assert "up2.weight: file (3, 3), model (32, 16, 2, 2)" in message


def test_constructor_arguments_that_contradict_the_weights_are_refused():
    state = _NotebookUNet(attention=False, base=4).state_dict()
    with pytest.raises(ValueError, match=r"classifier\.3\.weight: file \(4, 256\), model \(3, 256\)"):
        UNet.from_reference(state, num_classes=3)


def test_non_reference_layouts_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="load_state_dict"):
        UNet.from_reference(UNet(base_channels=4, depth=2).state_dict())
    with pytest.raises(ValueError, match="not in the reference notebook's layout"):
        UNet.from_reference({"fc.weight": torch.zeros(2, 2)})


def test_wrapped_checkpoint_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": _NotebookUNet(base=4).state_dict()}, path)
    with pytest.raises(ValueError, match="not a plain state dict") as info:
        UNet.from_reference(path)
    assert "'state_dict'" in str(info.value)


def test_malformed_files_are_refused(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a torch file" * 20)
    with pytest.raises(ValueError, match=r"Could not read .*junk\.pth.* as a PyTorch weights file"):
        UNet.from_reference(junk)

    good = tmp_path / "good.pth"
    torch.save(UNet(base_channels=4, depth=2).reference_state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"Could not read .*truncated\.pth"):
        UNet.from_reference(truncated)

    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        UNet.from_reference(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match=r"path to a \.pth file or a state dict"):
        UNet.from_reference(42)


class _CodeRunningPayload:
    """Pickles to a call of exec(): loading it with weights_only=False would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    state = _NotebookUNet(base=4).state_dict()
    state["outc.bias"] = _CodeRunningPayload(marker)
    torch.save(state, path)

    with pytest.raises(ValueError, match=r"Refused to load .*evil\.pth.*could run arbitrary code") as info:
        UNet.from_reference(path)

    assert not marker.exists()
    assert "exec" in str(info.value)  # names what was refused
    # The payload is real: an unsafe load does run it (this is what weights_only=True prevented).
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"
