"""The app's logic without a browser: reading uploads, loading models (also ONNX), predicting, the result files."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from brain_mtl.app import app_main, service
from brain_mtl.app.launch import CKPT_ENV, build_parser, streamlit_command
from brain_mtl.data import io as data_io
from tests.app.helpers import GLIOMA_LOGITS, softmax, synthetic_scan


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


# ------------------------------------------------------------------------------------------------ reading uploads
def test_uploads_of_any_kind_become_rgb_at_their_own_size():
    gray, _ = synthetic_scan(height=40, width=60)
    bgr = np.dstack([gray, gray // 2, 255 - gray])
    bgra = np.dstack([bgr, np.full_like(gray, 128)])
    deep = gray.astype(np.uint16) * 257
    for name, data in (("g.png", _png(gray)), ("c.jpg", _jpeg(bgr)), ("a.png", _png(bgra)), ("d.png", _png(deep))):
        image = service.read_upload(name, data)
        assert image.shape == (40, 60, 3) and image.dtype == np.uint8, name
    rgb = service.read_upload("c.png", _png(bgr))
    assert (rgb[..., 0] == bgr[..., 2]).all()  # BGR file -> RGB array
    assert (service.read_upload("g.png", _png(gray))[..., 1] == gray).all()


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty.png", b"", "empty.png: the file is empty"),
        ("notes.png", b"patient notes, not a picture", "notes.png: unreadable image: not an image"),
        ("page.jpg", b"<html><body>404</body></html>", "it looks like an HTML or XML page"),
    ],
)
def test_files_that_are_no_image_are_named_with_the_reason(name, data, expected):
    with pytest.raises(service.UploadError, match="^" + name.replace(".", r"\.") + ": ") as caught:
        service.read_upload(name, data)
    assert expected in str(caught.value)


@pytest.mark.parametrize("encode", [_png, _jpeg], ids=["png", "jpeg"])
def test_truncated_files_are_refused_even_when_the_decoder_would_fill_them_in(encode):
    gray, _ = synthetic_scan(height=64, width=64)
    data = encode(gray)
    with pytest.raises(service.UploadError, match=r"^cut\.img: truncated: the (PNG|JPEG) data ends before"):
        service.read_upload("cut.img", data[: len(data) * 2 // 3])


def test_huge_images_are_refused_from_the_header_before_decoding(monkeypatch):
    data = _png(np.zeros((300, 400), np.uint8))

    def no_decoding(*_args, **_kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr("brain_mtl.data.io.decode_unchanged", no_decoding)
    with pytest.raises(service.UploadError, match=r"^big\.png: 400 x 300 pixels is larger than the app takes"):
        service.read_upload("big.png", data, max_pixels=100_000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` gray pixels and holds none (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_from_the_header(monkeypatch):
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr("brain_mtl.data.io.decode_unchanged", no_decoding)
    # 30000 x 30000: read from the header by brain_mtl's own parser (Pillow would refuse to open it at all).
    with pytest.raises(service.UploadError, match=r"^bomb\.png: 30000 x 30000 pixels is larger than the app takes"):
        service.read_upload("bomb.png", _png_header_only(30000, 30000))
    with pytest.raises(service.UploadError, match=r"^wide\.png: 6000 x 5000 pixels is larger than the app takes"):
        service.read_upload("wide.png", _png_header_only(6000, 5000))


# ---------------------------------------------------------------------------------------------------- the model
def test_checkpoint_facts(glioma_ckpt):
    model = service.load_app_model(glioma_ckpt, device="cpu")
    facts = dict(model.facts.rows())
    assert facts["Format"] == "Lightning checkpoint"
    assert facts["Encoder"] == "reference U-Net encoder (4 base channels, 2 levels)"
    assert facts["Input size"] == "32 x 32 px"
    assert "synthetic scans (500 training images" in facts["Training data"]
    assert facts["Training"] == "3 epochs, 30 optimizer steps"
    assert facts["File written"].endswith("UTC") and facts["File written"][:2] == "20"
    assert model.supports_gradcam


def test_missing_and_damaged_model_files_raise_with_their_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt"):
        service.load_app_model(tmp_path / "nope.ckpt")
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"damaged\.ckpt"):
        service.load_app_model(damaged)
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"not a graph")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match=r"model\.onnx: cannot load it as an ONNX model"):
        service.load_app_model(not_onnx)


def _scan_input(name="scan.png", height=96, width=128) -> service.ScanInput:
    gray, _ = synthetic_scan(height=height, width=width)
    return service.ScanInput.upload(name, _png(gray))


def test_settings_reach_the_predictor(glioma_ckpt, no_tumor_ckpt):
    model = service.load_app_model(glioma_ckpt, device="cpu")
    scan = _scan_input()
    full = service.predict_scan(model, scan, service.Settings(mask_threshold=0.5))
    assert full.prediction.source == "scan.png"
    assert full.prediction.class_name == "glioma"
    assert full.prediction.class_probs.tolist() == pytest.approx(softmax(GLIOMA_LOGITS), abs=1e-5)
    assert full.area_px == 96 * 128 and full.area_share == 1.0
    assert service.predict_scan(model, scan, service.Settings(mask_threshold=0.96)).area_px == 0  # sigmoid(3)=0.953
    flipped = service.predict_scan(model, scan, service.Settings(flip_tta=True))
    assert flipped.prediction.class_probs.tolist() == pytest.approx(softmax(GLIOMA_LOGITS), abs=1e-5)
    cam = service.predict_scan(model, scan, service.Settings(gradcam=True)).prediction
    assert cam.gradcam is not None and cam.gradcam.shape == (96, 128)

    healthy = service.load_app_model(no_tumor_ckpt, device="cpu")
    assert service.predict_scan(healthy, scan, service.Settings(mask_gate=False)).area_px == 96 * 128
    assert service.predict_scan(healthy, scan, service.Settings(mask_gate=True)).area_px == 0


def test_overlay_fills_and_outlines_the_mask_and_draws_the_truth_in_green(glioma_ckpt):
    model = service.load_app_model(glioma_ckpt, device="cpu")
    example = service.example_scan("example_glioma.png", size=128)
    assert example.truth is not None and 0 < example.truth.sum() < 128 * 128  # a synthetic tumour
    result = service.predict_scan(model, example, service.Settings())
    clear = service.overlay_image(result, opacity=0.0)
    tinted = service.overlay_image(result, opacity=0.8)
    assert tinted.shape == example.image.shape
    assert np.abs(tinted.astype(int) - example.image).mean() > np.abs(clear.astype(int) - example.image).mean() > 0
    edge = example.truth.astype(bool) & (cv2.erode(example.truth, np.ones((3, 3), np.uint8)) == 0)
    assert (clear[edge] == service.GREEN).all(axis=1).mean() > 0.5


def test_export_files_match_predict_images(glioma_ckpt):
    model = service.load_app_model(glioma_ckpt, device="cpu")
    results = [
        service.predict_scan(model, _scan_input("a.png", 50, 70), service.Settings(gradcam=True)),
        service.predict_scan(model, _scan_input("a.png", 30, 20), service.Settings()),
    ]
    files = service.export_files(results, [("bad.png", "bad.png: not an image")], model.facts.class_names, {"x": 1})
    assert files.stems == ["a", "a_2"]  # unique, as predict-images names them
    masks = [cv2.imdecode(np.frombuffer(m, np.uint8), cv2.IMREAD_UNCHANGED) for m in files.masks]
    assert [m.shape for m in masks] == [(50, 70), (30, 20)]
    assert set(np.unique(masks[0])) == {255}
    assert files.gradcams[0] is not None and files.gradcams[1] is None
    lines = files.csv.decode().splitlines()
    assert lines[0].startswith("file,stem,class,class_index,probability,p_glioma")
    assert len(lines) == 3 and lines[1].startswith("a.png,a,glioma,0,0.643914")
    payload = json.loads(files.json)
    assert payload["failed"] == [{"file": "bad.png", "error": "bad.png: not an image"}]
    assert payload["settings"] == {"x": 1}


def test_examples_are_fixed_synthetic_slices():
    first, again = service.example_scan("example_meningioma.png"), service.example_scan("example_meningioma.png")
    assert first.image.shape == (384, 384, 3) and (first.image == again.image).all()
    assert service.example_scan("example_no_tumor.png").truth.sum() == 0
    assert {n: service.example_scan(n, 64).image.mean() for n in service.EXAMPLES}  # all four can be drawn


# ---------------------------------------------------------------------------------------------------------- ONNX
def test_onnx_files_predict_like_their_checkpoint(glioma_ckpt, glioma_onnx):
    torch_model = service.load_app_model(glioma_ckpt, device="cpu")
    onnx_model = service.load_app_model(glioma_onnx)
    assert not onnx_model.supports_gradcam
    assert onnx_model.facts.image_size == 32 and onnx_model.facts.class_names == torch_model.facts.class_names
    assert "ONNX" in onnx_model.facts.kind
    scan = _scan_input(height=45, width=61)
    for settings in (service.Settings(), service.Settings(flip_tta=True, mask_threshold=0.3)):
        expected = service.predict_scan(torch_model, scan, settings).prediction
        got = service.predict_scan(onnx_model, scan, settings).prediction
        assert got.class_probs == pytest.approx(expected.class_probs, abs=1e-4)
        assert np.abs(got.mask_probs - expected.mask_probs).max() < 1e-4
        assert (got.mask == expected.mask).all()
    # Grad-CAM asked of an ONNX model: the prediction comes without a map rather than failing.
    assert service.predict_scan(onnx_model, scan, service.Settings(gradcam=True)).prediction.gradcam is None


def test_onnx_files_without_brain_mtl_metadata_are_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    mask = helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [1, 3, 8, 8])
    logits = helper.make_tensor_value_info("class_logits", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["image"], ["mask_logits"]),
            helper.make_node("Identity", ["image"], ["class_logits"]),
        ],
        "g",
        [image],
        [mask, logits],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match=r"foreign\.onnx: the ONNX file lacks the metadata .*export the checkpoint"):
        service.load_app_model(path)


# ------------------------------------------------------------------------------------------------ command line
def test_command_line_options_and_server_flags():
    args = build_parser().parse_args(["--ckpt_path", "m.ckpt", "--port", "9000"])
    assert (args.ckpt_path, args.host, args.port) == ("m.ckpt", "127.0.0.1", 9000)
    command = " ".join(streamlit_command("127.0.0.1", 9000))
    for flag in (
        "--server.address 127.0.0.1",
        "--server.port 9000",
        "--server.headless true",
        "--browser.gatherUsageStats false",
        "--client.showErrorDetails none",
    ):
        assert flag in command


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    assert app_main(["--ckpt_path", str(tmp_path / "missing.ckpt")]) == 2
    assert "missing.ckpt does not exist" in capsys.readouterr().err
    assert app_main(["--ckpt_path", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert app_main(["--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    assert app_main(["--torch_threads", "0"]) == 2
    assert "--torch_threads must be at least 1" in capsys.readouterr().err


def test_without_ckpt_path_the_quickstart_checkpoint_is_used(tmp_path, monkeypatch, glioma_ckpt):
    from brain_mtl.app import launch

    started = {}

    class FakeServer:
        def __init__(self, command, env):
            started.update(command=command, ckpt=env[CKPT_ENV])

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", FakeServer)
    monkeypatch.chdir(tmp_path)
    assert app_main([]) == 0
    assert started["ckpt"] == ""  # none yet: the page says how to get one
    default = tmp_path / service.DEFAULT_CKPT
    default.parent.mkdir(parents=True)
    default.write_bytes(glioma_ckpt.read_bytes())
    assert app_main(["--port", "8555"]) == 0
    assert started["ckpt"] == str(service.DEFAULT_CKPT) and Path(started["ckpt"]).resolve() == default.resolve()
    assert "8555" in started["command"]
    assert os.environ.get(CKPT_ENV) is None  # only the server's environment carries it


def test_the_cli_lists_the_app(capsys):
    from brain_mtl.commands.main import main

    assert main(["--help"]) == 0
    assert "python -m brain_mtl app " in capsys.readouterr().out


def test_uploads_that_hide_their_size_from_pillow_are_refused_undecoded(monkeypatch):
    # Hostile probes that got past the old header check (Pillow's): each reached OpenCV's decoder in full.
    monkeypatch.setattr(data_io, "_imdecode", lambda data: pytest.fail("the pixels were decoded"))

    def chunk(kind: bytes, payload: bytes, crc_ok: bool = True) -> bytes:
        crc = zlib.crc32(kind + payload) ^ (0 if crc_ok else 1)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 6000, 6000, 16, 6, 0, 0, 0)  # 16-bit RGBA
    crc_damaged = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tEXt", b"a\x00b", crc_ok=False)
        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )  # fmt: skip
    with pytest.raises(service.UploadError, match=r"^crc\.png: 6000 x 6000 pixels is larger than the app takes"):
        service.read_upload("crc.png", crc_damaged)
    hdr = cv2.imencode(".hdr", np.ones((64, 64, 3), np.float32))[1].tobytes()  # a Radiance HDR named .png
    with pytest.raises(service.UploadError, match=r"^radiance\.png: unreadable image: not an image"):
        service.read_upload("radiance.png", hdr)
