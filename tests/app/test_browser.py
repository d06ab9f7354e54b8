"""The app in a real headless Chromium: upload a scan, read the result, download the mask, survive a broken file.

The server is ``python -m brain_mtl app`` on a free port of 127.0.0.1, started and stopped by the fixture (its
port is checked closed afterwards). The browser is the system's Chromium with its chromedriver (Debian packages
``chromium`` and ``chromium-driver``; ``.ci/run`` installs them): without them the test skips, saying so, unless
``BRAIN_MTL_REQUIRE_BROWSER=1`` (set by CI) turns the skip into a failure. Screenshots of every step are saved in
the test's temporary folder.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from tests.app.browser import AppPage, browser_paths, port_open, running_app, start_browser
from tests.app.helpers import synthetic_scan, write_scan
from tests.conftest import requested_torch_threads
from tests.fixtures import write_dicom

REQUIRE_ENV = "BRAIN_MTL_REQUIRE_BROWSER"


def _missing(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 asks for the browser test to run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_ready() -> None:
    try:
        import selenium  # noqa: F401
        import streamlit  # noqa: F401
    except ImportError as error:
        _missing(f"the browser test needs the app and test extras ({error.name} missing): pip install -e '.[test]'")
    if browser_paths() is None:
        _missing("no chromium and chromedriver on PATH: apt-get install chromium chromium-driver (see .ci/run)")


@pytest.fixture(scope="module")
def server(browser_ready, glioma_ckpt, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("app_server")
    with running_app(glioma_ckpt, workdir, threads=requested_torch_threads() or 1) as app_server:
        assert port_open(app_server.port)
        yield app_server
    # Nothing left behind: the port is closed and the launcher and its Streamlit server are both gone.
    assert not port_open(app_server.port), f"port {app_server.port} is still open after the server was stopped"
    with pytest.raises(ProcessLookupError):
        os.killpg(app_server.process.pid, 0)


@pytest.fixture
def page(server, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = start_browser(downloads)
    try:
        app_page = AppPage(driver, server.url, downloads)
        app_page.open()
        yield app_page
    finally:
        driver.quit()


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


def test_upload_result_download_and_a_broken_file(page, tmp_path):
    shots = tmp_path / "screenshots"
    # A gray, non-square synthetic slice with a glioma drawn where the generator says.
    gray, truth = synthetic_scan(label=0, height=384, width=512, seed=3)
    assert truth.sum() > 500
    scan = write_scan(tmp_path / "scan_glioma.png", gray)
    page.screenshot(shots / "0_empty.png")

    seconds = page.upload_and_time(scan, "scan_glioma")
    box = page.result("scan_glioma")
    page.screenshot(shots / "1_result.png", box)
    text = box.text
    assert "Predicted class: glioma (64.4%)" in text
    for name, share in (("glioma", "64.4%"), ("meningioma", "23.7%"), ("pituitary", "8.7%"), ("no_tumor", "3.2%")):
        assert f"{name}\n{share}" in text, f"{name} {share} not shown:\n{text}"
    assert f"Tumour area: {384 * 512:,} px, 100.00% of the slice" in text

    shown_scan = cv2.cvtColor(_decode(page.image_bytes(box, "Scan")), cv2.COLOR_BGR2GRAY)
    shown_overlay = _decode(page.image_bytes(box, "Predicted tumour"))
    assert shown_scan.shape == shown_overlay.shape[:2] == (384, 512)
    assert (shown_scan == gray).all()  # the page shows the upload itself ...
    overlay_gray = cv2.cvtColor(shown_overlay, cv2.COLOR_BGR2GRAY)
    assert np.abs(overlay_gray.astype(int) - gray).mean() > 10  # ... and the prediction drawn over it

    mask = _decode(page.download(box, "Mask PNG", "scan_glioma_mask.png").read_bytes())
    assert mask.shape == (384, 512)  # the upload's own size, not the network's 32 x 32
    assert mask[truth].min() == 255  # the known tumour lies inside the predicted mask (here: the whole slice)

    broken = tmp_path / "broken_scan.png"
    broken.write_bytes(b"<html><body>this was a web page, not a scan</body></html>")
    page.upload(broken)
    message = page.wait_error("broken_scan.png")
    page.wait_idle()
    page.screenshot(shots / "2_broken.png")
    assert message.startswith("broken_scan.png: unreadable image: not an image")
    assert page.tracebacks() == [] and "Traceback" not in page.driver.page_source
    assert page.result("scan_glioma") is not None  # the earlier result stays

    # Still working: another scan, RGB JPEG this time, is predicted after the broken one.
    rgb = np.dstack([gray[:200, :300], gray[:200, :300] // 2, gray[:200, :300]])
    second = page.upload_and_time(write_scan(tmp_path / "second.jpg", rgb), "second")
    assert "Predicted class: glioma" in page.result("second").text
    assert "broken_scan.png" in " ".join(page.errors())
    page.screenshot(shots / "3_second.png", page.result("second"))

    timings = {"upload_to_result_s": round(seconds, 3), "second_upload_to_result_s": round(second, 3)}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print(f"upload to result: {seconds:.2f} s (first scan), {second:.2f} s (second); screenshots in {shots}")
    assert sorted(p.name for p in shots.iterdir()) == ["0_empty.png", "1_result.png", "2_broken.png", "3_second.png"]


def test_a_dicom_upload_is_predicted_like_the_same_image(page, tmp_path):
    pytest.importorskip("pydicom")
    gray, _ = synthetic_scan(label=0, height=384, width=512, seed=3)
    # 16-bit stored values with a window that maps them back onto the same 0..255 grays (DICOM's linear VOI function).
    scan = write_dicom(tmp_path / "scan_dicom.dcm", gray.astype(np.uint16), window=(128, 256), uid="1.2.3.99")
    page.upload_and_time(scan, "scan_dicom")
    box = page.result("scan_dicom")
    page.screenshot(tmp_path / "dicom_result.png", box)
    assert "Predicted class: glioma (64.4%)" in box.text  # what the PNG of the same slice gets
    shown_scan = cv2.cvtColor(_decode(page.image_bytes(box, "Scan")), cv2.COLOR_BGR2GRAY)
    assert (shown_scan == gray).all()
    mask = _decode(page.download(box, "Mask PNG", "scan_dicom_mask.png").read_bytes())
    assert mask.shape == (384, 512)
    assert page.tracebacks() == []
