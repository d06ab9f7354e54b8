"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name, for the header of a benchmark table."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_calls(
    fn: Callable[[], object], warmup: int, repeats: int, sync: Callable[[], None] = lambda: None
) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed ones (``sync``: e.g. a CUDA sync)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def upscale_copy(source: Path, target: Path, side: int) -> None:
    """Copy a BRISC-layout folder with every image and mask resized to side x side."""
    import cv2

    for path in source.rglob("*"):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpg":
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(
                str(out), cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 92]
            )
        elif path.suffix == ".png":
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(out), cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST))
        else:
            out.write_bytes(path.read_bytes())
