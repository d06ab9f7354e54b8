"""Test-time augmentation: the 8 views of D4, their exact inverses, the averaging, and every way in to it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brain_mtl import Predictor
from brain_mtl.commands.main import main
from brain_mtl.inference import Preprocessing
from brain_mtl.models import UNet, UNetOutput
from brain_mtl.models.tta import TTA_MODES, parse_tta, tta_probs, views
from tests.inference.helpers import LopsidedNet


class FirstChannelNet(nn.Module):
    """Mask logits = the input's first channel (no symmetry at all); class logits from the top-left corner.

    TTA maps every view's mask back, so the averaged mask must be exactly ``sigmoid(x[:, :1])``; the class logits
    change with the orientation, so their average is a real mean over 8 different values.
    """

    in_channels = 3
    output_stride = 16

    def forward(self, x: Tensor) -> UNetOutput:
        corner = x[..., :4, :4].mean(dim=(2, 3))  # (B, 3)
        class_logits = torch.cat([corner, corner[:, :1] * -2.0], dim=1) * 3.0
        return UNetOutput(x[:, :1].clone(), class_logits)


class SymmetricConvNet(nn.Module):
    """A D4-equivariant network: convolutions with D4-symmetric kernels, global pooling for the classes.

    Rotating or mirroring the input rotates or mirrors the mask logits and leaves the class logits unchanged, so
    its TTA prediction equals its plain prediction.
    """

    in_channels = 3
    output_stride = 1

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.k1 = nn.Parameter(self._symmetric(torch.randn(6, 3, 5, 5, generator=generator)))
        self.k2 = nn.Parameter(self._symmetric(torch.randn(1, 6, 3, 3, generator=generator)))
        self.head = nn.Linear(12, 4)

    @staticmethod
    def _symmetric(kernel: Tensor) -> Tensor:
        # The mean over the 8 views of a kernel is invariant under every one of them.
        return torch.stack([view.apply(kernel) for view in views("d4")]).mean(0)

    def forward(self, x: Tensor) -> UNetOutput:
        hidden = torch.relu(F.conv2d(x, self.k1, padding=2))
        pooled = torch.cat([hidden.mean(dim=(2, 3)), hidden.amax(dim=(2, 3))], dim=1)
        return UNetOutput(F.conv2d(hidden, self.k2, padding=1), self.head(pooled))


def test_d4_views_are_the_eight_symmetries_and_each_inverse_is_exact():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)  # non-square, every pixel different
    expected = {
        "identity": x,
        "hflip": x.flip(-1),
        "vflip": x.flip(-2),
        "rot90": torch.rot90(x, 1, dims=(-2, -1)),
        "rot180": x.flip(-2).flip(-1),
        "rot270": torch.rot90(x, -1, dims=(-2, -1)),
        "transpose": x.transpose(-2, -1),
        "anti_transpose": x.flip(-2).flip(-1).transpose(-2, -1),
    }
    d4 = views("d4")
    assert [v.name for v in d4] == list(expected)
    for view in d4:
        viewed = view.apply(x)
        assert torch.equal(viewed, expected[view.name]), view.name
        assert viewed.shape[-2:] == ((6, 4) if view.swaps_sides else (4, 6)), view.name
        assert torch.equal(view.invert(viewed), x), view.name
    assert len({tuple(v.apply(x).flatten().tolist()) for v in d4}) == 8  # eight different images
    assert [v.name for v in views("flip")] == ["identity", "hflip"]
    assert [v.name for v in views("none")] == ["identity"]


def test_parse_tta_keeps_the_old_boolean_and_refuses_unknown_modes():
    assert [parse_tta(v) for v in (None, False, True, "none", "FLIP", "d4")] == [
        "none",
        "none",
        "flip",
        "none",
        "flip",
        "d4",
    ]
    assert TTA_MODES == ("none", "flip", "d4")
    with pytest.raises(ValueError, match="tta must be one of none, flip, d4"):
        parse_tta("d8")


@pytest.mark.parametrize("mode", ["flip", "d4"])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (32, 64)])
def test_every_view_is_mapped_back_onto_the_original_pixels(mode, height, width):
    # Mask logits = the input itself: any wrong inverse would put some view's mask on other pixels.
    model = FirstChannelNet()
    x = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(1))
    mask_probs, class_probs = tta_probs(model, x, mode)
    torch.testing.assert_close(mask_probs, torch.sigmoid(x[:, :1]), rtol=0, atol=1e-6)

    expected = torch.stack([torch.softmax(model(v.apply(x)).class_logits, 1) for v in views(mode)]).mean(0)
    torch.testing.assert_close(class_probs, expected)
    plain = torch.softmax(model(x).class_logits, 1)
    assert not torch.allclose(class_probs, plain, atol=1e-3)  # the class average is over different views


def test_an_equivariant_network_predicts_the_same_with_and_without_tta():
    model = SymmetricConvNet().eval()
    x = torch.randn(2, 3, 24, 40, generator=torch.Generator().manual_seed(2))  # asymmetric content, non-square
    with torch.no_grad():
        plain_mask, plain_class = tta_probs(model, x, "none")
        d4_mask, d4_class = tta_probs(model, x, "d4")
    torch.testing.assert_close(d4_mask, plain_mask, rtol=0, atol=1e-5)
    torch.testing.assert_close(d4_class, plain_class, rtol=0, atol=1e-5)
    # Guard: a network that is not equivariant gives a different mask under TTA.
    lopsided_plain, _ = tta_probs(LopsidedNet(), x, "none")
    lopsided_d4, _ = tta_probs(LopsidedNet(), x, "d4")
    assert not torch.allclose(lopsided_plain, lopsided_d4, atol=1e-3)


def test_none_is_exactly_one_forward_pass():
    model = LopsidedNet()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    mask_probs, class_probs = tta_probs(model, x, "none")
    out = model(x)
    assert torch.equal(mask_probs, torch.sigmoid(out.mask_logits))
    assert torch.equal(class_probs, torch.softmax(out.class_logits, 1))


def test_d4_refuses_sides_the_rotated_network_cannot_take():
    model = UNet(base_channels=4, depth=2, classifier_hidden=8).eval()  # output stride 4
    with torch.no_grad():
        mask_probs, _ = tta_probs(model, torch.randn(1, 3, 16, 24), "d4")  # multiples of 4: rotations work
        assert mask_probs.shape == (1, 1, 16, 24)
        with pytest.raises(ValueError, match=r"height and width \(16 x 18\) must both be multiples of .* stride 4"):
            tta_probs(model, torch.randn(1, 3, 16, 18), "d4")


def test_predictor_tta_modes():
    model = FirstChannelNet()
    image = np.random.default_rng(4).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    predictor = Predictor(model, Preprocessing(32), device="cpu", tta="d4")
    assert predictor.tta == "d4"
    assert Predictor(model, Preprocessing(32), device="cpu", tta=True).tta == "flip"
    assert Predictor(model, Preprocessing(32), device="cpu").tta == "none"
    with pytest.raises(ValueError, match="tta must be one of"):
        Predictor(model, Preprocessing(32), device="cpu", tta="rotate")

    x = predictor.preprocessing(image)[None]
    mask_probs, class_probs = predictor.forward_probs(x)
    expected_mask, expected_class = tta_probs(model, x, "d4")
    torch.testing.assert_close(mask_probs, expected_mask)
    torch.testing.assert_close(class_probs, expected_class)
    # The per-call override, and the result at the image's own size.
    plain = predictor.predict(image, tta="none")
    d4 = predictor.predict(image)
    assert d4.mask.shape == plain.mask.shape == (40, 56)
    np.testing.assert_allclose(d4.mask_probs, plain.mask_probs, atol=1e-6)  # FirstChannelNet's mask is exact
    assert not np.allclose(d4.class_probs, plain.class_probs, atol=1e-3)
    np.testing.assert_allclose(d4.class_probs, expected_class[0].numpy(), atol=1e-6)


@pytest.mark.parametrize(("flag", "mode"), [([], "none"), (["--tta"], "flip"), (["--tta", "d4"], "d4")])
def test_predict_images_tta_flag(tmp_path, tiny_ckpt, flag, mode):
    import cv2

    image = np.random.default_rng(5).integers(0, 256, (36, 52), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "scan.png"), image)
    out = tmp_path / "out"
    args = ["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(tmp_path / "scan.png")]
    assert main([*args, "--output", str(out), "--no_overlay", *flag]) == 0
    written = json.loads((out / "predictions.json").read_text())
    assert written["settings"]["tta"] == mode
    expected = Predictor.from_checkpoint(tiny_ckpt, device="cpu", tta=mode).predict(tmp_path / "scan.png")
    row = written["predictions"][0]
    assert row["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_predict_images_refuses_an_unknown_tta_mode(tmp_path, tiny_ckpt, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", "x.png", "--output", "o", "--tta", "d8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Got value: d8" in err and "'none', 'flip', 'd4'" in err
