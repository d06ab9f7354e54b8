"""``python -m brain_mtl app``: start the web app (a Streamlit server) for a checkpoint or an exported ONNX file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jsonargparse import ArgumentParser

__all__ = ["CKPT_ENV", "DEVICE_ENV", "THREADS_ENV", "app_main", "build_parser", "page_script", "streamlit_command"]

CKPT_ENV = "BRAIN_MTL_APP_CKPT_PATH"
"""Environment variable through which the launcher tells the page which model to load (empty: none)."""
DEVICE_ENV = "BRAIN_MTL_APP_DEVICE"
"""Environment variable with the device the page runs the model on."""
THREADS_ENV = "BRAIN_MTL_APP_TORCH_THREADS"
"""Environment variable with the number of CPU threads PyTorch uses in the server (empty: PyTorch's default)."""

INSTALL_HINT = 'pip install -e ".[app]"  (from a clone; or pip install "brain-mtl[app]")'

DEFAULT_CKPT = Path("runs/quickstart/checkpoints/last.ckpt")
"""The checkpoint the quickstart writes (relative to the folder the app is started in), used without --ckpt_path."""

NO_CHECKPOINT = (
    "No model to load: train one with `python -m brain_mtl fit --config configs/quickstart.yaml` (it writes "
    f"`{DEFAULT_CKPT.as_posix()}`, which the app then finds), or start the app with `--ckpt_path PATH` "
    "(a `.ckpt` checkpoint or an ONNX file from `python -m brain_mtl export`)."
)
"""The one sentence the page shows when it has no checkpoint."""


def serve(
    ckpt_path: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8501,
    device: str = "auto",
    torch_threads: int | None = None,
    max_upload_mb: int = 50,
) -> None:
    """Start the brain_mtl web app: upload scans, see masks, classes and Grad-CAM, download the results.

    Args:
        ckpt_path: Lightning checkpoint (.ckpt), state-dict file, ensemble file (.yaml, from `python -m brain_mtl
            cv`) or ONNX file from `python -m brain_mtl export`;
            default: runs/quickstart/checkpoints/last.ckpt when it exists (the quickstart's).
        host: address to listen on; 127.0.0.1 serves this machine only (0.0.0.0: every network interface).
        port: TCP port.
        device: where the model runs: auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ...
        torch_threads: CPU threads PyTorch uses (default: its own choice, one per core); 1 gives steadier times on
            a machine busy with other work.
        max_upload_mb: largest file the page accepts, in MB.
    """


def build_parser() -> ArgumentParser:
    """The command line of ``brain_mtl app``, generated from :func:`serve`'s signature and docstring."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        prog="brain_mtl app",
        description="Start the brain_mtl web app (Streamlit) on a local address and print its URL. Research tool, "
        "not a diagnostic device.",
    )
    parser.add_function_arguments(serve, as_group=False)
    return parser


def page_script() -> Path:
    """The Streamlit script of the page."""
    return Path(__file__).with_name("page.py")


def streamlit_command(host: str, port: int, max_upload_mb: int = 50) -> list[str]:
    """The ``streamlit run`` command line: headless, no usage statistics, no file watcher, no tracebacks in the page."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(page_script()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "viewer",
        "--global.developmentMode",
        "false",
        "--runner.magicEnabled",
        "false",
    ]


def _resolve_checkpoint(ckpt_path: str | None) -> tuple[str, str | None]:
    """``(path for the page or "", error)``: a given path must exist; without one the quickstart's is used if any."""
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            what = "is a folder, not a model file" if path.is_dir() else "does not exist"
            return "", f"--ckpt_path {ckpt_path} {what}. {NO_CHECKPOINT}"
        return str(path), None  # as given: the server runs in this folder, and the page shows the path as typed
    if DEFAULT_CKPT.is_file():
        return str(DEFAULT_CKPT), None
    print(f"note: {NO_CHECKPOINT}", file=sys.stderr)
    return "", None


def app_main(argv: Sequence[str] | None = None) -> int:
    """``python -m brain_mtl app``: see ``--help``. Runs the server until Ctrl+C; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not 1 <= int(args.port) <= 65535:
        print(f"error: --port must be between 1 and 65535, got {args.port}", file=sys.stderr)
        return 2
    if args.torch_threads is not None and int(args.torch_threads) < 1:
        print(f"error: --torch_threads must be at least 1, got {args.torch_threads}", file=sys.stderr)
        return 2
    if int(args.max_upload_mb) < 1:
        print(f"error: --max_upload_mb must be at least 1, got {args.max_upload_mb}", file=sys.stderr)
        return 2
    try:
        import streamlit  # noqa: F401
    except ImportError:
        print(f"error: the web app needs Streamlit, which is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    ckpt, problem = _resolve_checkpoint(args.ckpt_path)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"note: listening on {args.host}: anyone who can reach this machine on port {args.port} can use the app "
            "and upload scans",
            file=sys.stderr,
        )
    threads = "" if args.torch_threads is None else str(int(args.torch_threads))
    env = dict(os.environ, **{CKPT_ENV: ckpt, DEVICE_ENV: str(args.device), THREADS_ENV: threads})
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    shown = "localhost" if args.host == "127.0.0.1" else args.host
    print(f"brain_mtl app: {ckpt or 'no model'} at http://{shown}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
    process = subprocess.Popen(streamlit_command(args.host, int(args.port), int(args.max_upload_mb)), env=env)
    # `kill <this pid>` stops the server too, rather than leaving it orphaned on its port (main thread only).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal sent Ctrl+C to the server too; give it a moment to close its port.
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
