"""Drive the app in a real headless Chromium: start the server, upload scans, read the page, download files.

Used by ``test_browser.py`` and, with the same code, to make the screenshot and the timing in ``docs/app.md``:

    PYTHONPATH=src python -m tests.app.browser --ckpt_path runs/quickstart/checkpoints/last.ckpt \\
        --scan scan.png --screenshot docs/images/app.png

The browser is the system's (Debian's ``chromium`` and ``chromium-driver``): nothing is downloaded, and Selenium
Manager is never asked for one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "chromium-driver")


def browser_paths() -> tuple[str, str] | None:
    """``(browser, driver)`` executables found on PATH (or in /usr/lib/chromium), else None."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if driver is None and Path("/usr/lib/chromium/chromedriver").is_file():
        driver = "/usr/lib/chromium/chromedriver"
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class AppServer:
    """``python -m brain_mtl app`` in its own process group, stopped (group and all) by :meth:`stop`.

    Args:
        ckpt_path: the model file (None: the quickstart's, looked up in ``cwd``).
        port: the port to serve on.
        log_path: where the server's output goes.
        cwd: the folder it runs in.
        threads: torch threads of the server (None: its default).
    """

    def __init__(
        self, ckpt_path: Path | None, port: int, log_path: Path, cwd: Path, threads: int | None = None
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
        src = Path(__file__).resolve().parents[2] / "src"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH", "")]))
        command = [sys.executable, "-m", "brain_mtl", "app", "--port", str(port)]
        if ckpt_path is not None:  # without one, the app looks for the quickstart's checkpoint in ``cwd``
            command += ["--ckpt_path", str(ckpt_path)]
        if threads is not None:
            command += ["--torch_threads", str(threads)]
        self._log = log_path.open("wb")
        # A process group of its own: stop() ends the launcher and the Streamlit server it starts, nothing else.
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_healthy(self, timeout: float = 90.0) -> None:
        """Wait until the server answers its health check; raise with its log if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.3)
        raise TimeoutError(f"the app server did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        """The server's output so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # The launcher may be gone while the Streamlit child still winds down: end the rest of the group too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


def start_browser(download_dir: Path, width: int = 1500, height: int = 1400):
    """A headless Chromium (the system's) that saves downloads into ``download_dir`` without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("no chromium and chromedriver on PATH")
    browser, driver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    os.environ.setdefault("SE_AVOID_STATS", "true")
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return chrome


class AppPage:
    """The app's page in a browser: upload files, wait for results, read them, download files.

    Args:
        driver: a Selenium WebDriver.
        url: the app's address.
        download_dir: where the browser saves downloads.
    """

    def __init__(self, driver, url: str, download_dir: Path) -> None:
        self.driver = driver
        self.url = url
        self.download_dir = download_dir

    def _wait(self, condition, timeout: float, message: str):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # Streamlit redraws elements while a script runs: an element found a moment ago may be gone; look again.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored)
        return wait.until(condition, message)

    def open(self, timeout: float = 90.0) -> None:
        """Load the page and wait for the uploader (the model is loaded by then)."""
        from selenium.webdriver.common.by import By

        self.driver.get(self.url)
        self._wait(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stFileUploader'] input[type='file']"),
            timeout,
            "the page showed no file uploader",
        )

    def upload(self, path: Path) -> None:
        """Give one file to the uploader (added to those already uploaded)."""
        from selenium.webdriver.common.by import By

        field = self.driver.find_element(By.CSS_SELECTOR, "[data-testid='stFileUploader'] input[type='file']")
        # ChromeDriver adds to a multiple-file input's earlier selection, which the uploader would take again.
        self.driver.execute_script("arguments[0].value = ''", field)
        field.send_keys(str(Path(path).resolve()))

    def result(self, stem: str):
        """The result box of the scan whose files are named ``stem``, or None."""
        from selenium.webdriver.common.by import By

        found = self.driver.find_elements(By.CSS_SELECTOR, f".st-key-result-{stem}")
        return found[0] if found else None

    def wait_result(self, stem: str, timeout: float = 60.0):
        """Wait until the result box of ``stem`` is complete: class, downloads, chart drawn, images loaded."""
        from selenium.webdriver.common.by import By

        def ready(_driver):
            box = self.result(stem)
            # Streamlit sends the elements one by one: the box is complete once its last element, the downloads, is.
            if box is None or "Predicted class" not in box.text or not self._idle():
                return False
            if not box.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton']"):
                return False
            if not box.find_elements(By.CSS_SELECTOR, "canvas, svg.marks"):  # the probability chart is drawn
                return False
            images = box.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
            loaded = images and all(
                self.driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in images
            )
            return box if loaded else False

        return self._wait(ready, timeout, f"no result for {stem} within {timeout:.0f} s")

    def upload_and_time(self, path: Path, stem: str, timeout: float = 60.0) -> float:
        """Upload a file and return the seconds until its result is shown (images loaded)."""
        start = time.perf_counter()
        self.upload(path)
        self.wait_result(stem, timeout)
        return time.perf_counter() - start

    def _idle(self) -> bool:
        from selenium.webdriver.common.by import By

        widgets = self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        return not any("Running" in w.text or "Stop" in w.text for w in widgets)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the app has finished running its script (no 'Running...' indicator)."""
        self._wait(lambda _d: self._idle(), timeout, "the app kept running")

    def errors(self) -> list[str]:
        """Texts of the error boxes on the page."""
        from selenium.webdriver.common.by import By

        boxes = self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
        if not boxes:
            boxes = self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlert']")
        return [box.text for box in boxes if box.text]

    def wait_error(self, name: str, timeout: float = 60.0) -> str:
        """Wait for an error box naming ``name``; return its text."""
        self._wait(lambda _d: any(name in text for text in self.errors()), timeout, f"no error naming {name}")
        return next(text for text in self.errors() if name in text)

    def tracebacks(self) -> list[str]:
        """Texts of exception boxes (Streamlit's traceback display); the app must never show one."""
        from selenium.webdriver.common.by import By

        return [box.text for box in self.driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")]

    def image_bytes(self, box, caption: str) -> bytes:
        """The bytes of the image captioned ``caption`` in a result box, fetched from the server as shown."""
        from selenium.webdriver.common.by import By

        for figure in box.find_elements(By.CSS_SELECTOR, "[data-testid='stImage']"):
            if caption in figure.text:
                src = figure.find_element(By.TAG_NAME, "img").get_attribute("src")
                with urllib.request.urlopen(src, timeout=10) as response:
                    return response.read()
        raise LookupError(f"no image captioned {caption!r}")

    def download(self, box, label: str, file_name: str, timeout: float = 30.0) -> Path:
        """Click the download button ``label`` in a box and wait for ``file_name`` in the download folder."""
        from selenium.webdriver.common.by import By

        target = self.download_dir / file_name
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        buttons = box.find_elements(By.CSS_SELECTOR, "[data-testid='stDownloadButton'] button")
        button = next((b for b in buttons if b.text.strip() == label), None)
        if button is None:
            raise LookupError(f"no download button {label!r}; buttons: {[b.text for b in buttons]}")
        button.click()
        self._wait(
            lambda _d: target.is_file() and not target.with_name(target.name + ".crdownload").exists(),
            timeout,
            f"{file_name} was not downloaded",
        )
        return target

    def screenshot(self, path: Path, box=None) -> Path:
        """Save a PNG of the window, scrolled to ``box`` when given."""
        if box is not None:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", box)
            time.sleep(0.3)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path


@contextlib.contextmanager
def running_app(ckpt_path: Path | None, workdir: Path, threads: int | None = None) -> Iterator[AppServer]:
    """An app server on a free port of 127.0.0.1, stopped on exit (its port closed)."""
    port = free_port()
    server = AppServer(ckpt_path, port, workdir / "server.log", workdir, threads)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Upload one scan into the app, print the time to its result, and save a screenshot (for docs/app.md)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ckpt_path", required=True, type=Path)
    parser.add_argument("--scan", required=True, type=Path, help="the scan to upload")
    parser.add_argument("--screenshot", required=True, type=Path)
    parser.add_argument("--gradcam", action="store_true", help="tick Grad-CAM before uploading")
    parser.add_argument("--repeat", type=int, default=1, help="upload the scan again under new names")
    parser.add_argument(
        "--as_quickstart",
        action="store_true",
        help="copy the checkpoint to runs/quickstart/checkpoints/last.ckpt and start the app without --ckpt_path",
    )
    parser.add_argument("--height", type=int, default=1250, help="window height in pixels")
    parser.add_argument("--torch_threads", type=int, default=None, help="the server's --torch_threads")
    args = parser.parse_args(argv)
    import tempfile

    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory(prefix="brain_mtl_app_shot_") as folder:
        work = Path(folder)
        ckpt: Path | None = args.ckpt_path.resolve()
        if args.as_quickstart:
            default = work / "runs" / "quickstart" / "checkpoints" / "last.ckpt"
            default.parent.mkdir(parents=True)
            shutil.copy2(args.ckpt_path, default)  # copy2 keeps the file's date, which the page shows
            ckpt = None
        with running_app(ckpt, work, args.torch_threads) as server:
            driver = start_browser(work, height=args.height)
            try:
                page = AppPage(driver, server.url, work)
                page.open()
                if args.gradcam:
                    page.wait_idle()
                    box = driver.find_element(By.CSS_SELECTOR, "input[type='checkbox'][aria-label='Grad-CAM heat map']")
                    driver.execute_script("arguments[0].click()", box)  # the input itself is hidden under its label
                    page.wait_idle()
                times = []
                for i in range(args.repeat):
                    copy = work / (args.scan.stem + (f"_{i + 1}" if i else "") + args.scan.suffix)
                    shutil.copyfile(args.scan, copy)
                    times.append(page.upload_and_time(copy, copy.stem))
                    page.wait_idle()
                for i, seconds in enumerate(times):
                    print(f"upload {i + 1}: result shown {seconds:.2f} s after the file was given to the uploader")
                for caption in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stCaptionContainer']"):
                    if "predicted in" in caption.text:
                        print(f"server side: {caption.text}")
                page.screenshot(args.screenshot.resolve())
                print(f"wrote {args.screenshot}")
            finally:
                driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
