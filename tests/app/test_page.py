"""The page's controls with Streamlit's AppTest: no server, no browser, a second or two per test."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from brain_mtl.app import service
from brain_mtl.app.launch import CKPT_ENV, DEVICE_ENV, page_script
from tests.app.helpers import synthetic_scan

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest


def _page(monkeypatch, ckpt: Path | str) -> AppTest:
    monkeypatch.setenv(CKPT_ENV, str(ckpt))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    app = AppTest.from_file(str(page_script()), default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _texts(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown) + "\n".join(c.value for c in app.caption)


def _images(app: AppTest) -> list:
    # Streamlit 1.6x names the element "image"; older AppTests list it by its proto field, "imgs".
    return app.get("image") or app.get("imgs")


def _download_labels(app: AppTest) -> list[str]:
    return [getattr(b, "label", None) or b.proto.label for b in app.get("download_button")]


def _area_lines(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if m.value.startswith("**Tumour area:**")]


@pytest.fixture
def counted(monkeypatch):
    """Counts the scans the page sends to the predictor."""
    calls = []
    real = service.predict_scan

    def predict_scan(model, scan, settings):
        calls.append((scan.name, settings))
        return real(model, scan, settings)

    monkeypatch.setattr(service, "predict_scan", predict_scan)
    return calls


def test_without_a_checkpoint_the_page_says_how_to_get_one(monkeypatch):
    app = _page(monkeypatch, "")
    assert [i.value for i in app.info] == [service.NO_CHECKPOINT]
    assert "python -m brain_mtl fit --config configs/quickstart.yaml" in service.NO_CHECKPOINT
    assert app.warning[0].value == service.RESEARCH_NOTICE


def test_a_damaged_checkpoint_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"PK\x03\x04 not really")
    app = _page(monkeypatch, damaged)
    assert len(app.error) == 1
    assert "Cannot load the model" in app.error[0].value and "damaged.ckpt" in app.error[0].value


def test_example_scan_shows_class_probabilities_area_and_downloads(monkeypatch, glioma_ckpt):
    app = _page(monkeypatch, glioma_ckpt)
    assert app.warning[0].value == service.RESEARCH_NOTICE
    facts = app.sidebar.markdown[0].value
    assert "**Encoder:** reference U-Net encoder" in facts and "**Input size:** 32 x 32 px" in facts
    app.multiselect(key="examples").set_value(["example_glioma.png"]).run()
    assert not app.exception
    assert "**Predicted class: glioma** (64.4%)" in _texts(app)
    table = app.table[0].value
    assert list(table["class"]) == ["glioma", "meningioma", "pituitary", "no_tumor"]
    assert list(table["probability"]) == ["64.4%", "23.7%", "8.7%", "3.2%"]
    assert _area_lines(app) == [f"**Tumour area:** {384 * 384:,} px, 100.00% of the slice"]
    assert _download_labels(app) == [
        "Mask PNG",
        "Overlay PNG",
        "Results CSV",
        "Results JSON (with settings and failed files)",
    ]
    assert len(_images(app)) == 2  # the scan and the prediction
    # "All scans" is a dataframe: its cells are text (st.table renders Markdown, where a file name could be a link).
    assert list(app.dataframe[0].value["file"]) == ["example_glioma.png"]


def test_threshold_gate_tta_and_opacity(monkeypatch, glioma_ckpt, no_tumor_ckpt, counted):
    app = _page(monkeypatch, glioma_ckpt)
    app.multiselect(key="examples").set_value(["example_pituitary.png"]).run()
    assert _area_lines(app) == [f"**Tumour area:** {384 * 384:,} px, 100.00% of the slice"]
    app.slider(key="threshold").set_value(0.96).run()  # above sigmoid(3): nothing is tumour
    assert _area_lines(app) == ["**Tumour area:** 0 px, 0.00% of the slice"]
    assert len(counted) == 2
    app.slider(key="opacity").set_value(0.9).run()  # drawing only: the network does not run again
    app.slider(key="threshold").set_value(0.5).run()  # back to a setting already predicted: from the cache
    assert len(counted) == 2
    app.checkbox(key="tta").check().run()
    assert counted[-1][1].flip_tta and len(counted) == 3
    assert _area_lines(app) == [f"**Tumour area:** {384 * 384:,} px, 100.00% of the slice"]

    healthy = _page(monkeypatch, no_tumor_ckpt)
    healthy.multiselect(key="examples").set_value(["example_no_tumor.png"]).run()
    assert "**Predicted class: no_tumor**" in _texts(healthy)
    assert _area_lines(healthy) == [f"**Tumour area:** {384 * 384:,} px, 100.00% of the slice"]
    healthy.checkbox(key="gate").check().run()
    assert _area_lines(healthy) == ["**Tumour area:** 0 px, 0.00% of the slice"]


def test_gradcam_adds_a_heat_map_and_its_download(monkeypatch, glioma_ckpt):
    app = _page(monkeypatch, glioma_ckpt)
    app.multiselect(key="examples").set_value(["example_meningioma.png"]).run()
    assert len(_images(app)) == 2
    app.checkbox(key="gradcam").check().run()
    assert not app.exception
    assert len(_images(app)) == 3
    assert "Grad-CAM PNG" in _download_labels(app)


def test_onnx_model_predicts_and_disables_gradcam(monkeypatch, glioma_onnx):
    app = _page(monkeypatch, glioma_onnx)
    assert "**Format:** ONNX" in app.sidebar.markdown[0].value
    assert app.checkbox(key="gradcam").disabled
    app.multiselect(key="examples").set_value(["example_glioma.png"]).run()
    assert not app.exception
    assert "**Predicted class: glioma** (64.4%)" in _texts(app)
    assert list(app.table[0].value["probability"]) == ["64.4%", "23.7%", "8.7%", "3.2%"]


def _uploader_supported(app: AppTest) -> bool:
    return hasattr(app.file_uploader(key="uploads"), "set_value")


def test_bad_uploads_are_named_and_the_good_ones_still_predicted(monkeypatch, glioma_ckpt, tmp_path):
    app = _page(monkeypatch, glioma_ckpt)
    if not _uploader_supported(app):
        pytest.skip("this Streamlit's AppTest cannot upload files (Streamlit 1.5x+ can); the browser test does")
    gray, _ = synthetic_scan(height=120, width=90)
    _, good = cv2.imencode(".png", gray)
    data = good.tobytes()
    app.file_uploader(key="uploads").set_value(
        [
            ("notes.png", b"not an image at all", "image/png"),
            ("scan.png", data, "image/png"),
            ("empty.png", b"", "image/png"),
            ("cut.png", data[: len(data) // 2], "image/png"),
        ]
    ).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert [e.split(":")[0] for e in errors] == ["notes.png", "empty.png", "cut.png"]
    assert "not an image" in errors[0] and "empty" in errors[1] and "truncated" in errors[2]
    assert "**Predicted class: glioma** (64.4%)" in _texts(app)
    assert _area_lines(app) == [f"**Tumour area:** {120 * 90:,} px, 100.00% of the slice"]
    assert list(app.dataframe[-1].value["file"]) == ["scan.png"]  # "All scans": text cells, never Markdown
