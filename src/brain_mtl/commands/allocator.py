"""Host memory: keep freed memory in the process instead of handing it back to the operating system.

A training step on the CPU allocates and frees the same large activation buffers every step. glibc's ``malloc``
serves each allocation over 32 MiB with a fresh ``mmap`` and returns it with ``munmap`` when freed, so every step
faults its activations back in page by page: for the reference network at 256x256 and batch 16 that is about 3.4
million page faults and a quarter of the step's CPU time spent in the kernel (docs/benchmarks.md). With mmap off and
trimming off, freed buffers stay in the heap and the next step reuses them: the same step then page-faults rarely,
for a higher peak resident memory (``fit`` of that network: 10.1-11.5 GiB instead of 8.3 GiB, since freed memory
stays in the process and the heap fragments).

``python -m brain_mtl`` (and the ``brain-mtl`` script) call :func:`keep_freed_memory` before they run a command;
code that trains through Lightning's ``Trainer`` directly can call it first. Set ``BRAIN_MTL_ALLOCATOR=system`` to
leave glibc's defaults alone: on a machine short of memory, or when ``LD_PRELOAD`` brings jemalloc or tcmalloc,
which cache freed memory themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ALLOCATOR_ENV", "keep_freed_memory"]

ALLOCATOR_ENV = "BRAIN_MTL_ALLOCATOR"
"""The environment variable that turns :func:`keep_freed_memory` off: ``system`` keeps glibc's defaults."""

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NO_TRIMMING = -1  # man mallopt: M_TRIM_THRESHOLD -1 turns trimming off completely


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to reuse freed memory instead of returning it to the operating system.

    Sets ``M_MMAP_MAX`` to 0 (large allocations of the main thread, where PyTorch allocates tensors, come from the
    heap instead of one ``mmap`` each) and turns trimming off (``M_TRIM_THRESHOLD`` -1: the heap never shrinks).
    Affects the whole process from then on, and the processes it forks afterwards (data loader workers under the
    ``fork`` start method); allocations made before keep their ``mmap``. Other threads' allocations over 64 MiB
    still use ``mmap`` (glibc's per-thread arenas).

    Returns:
        True if the settings were applied; False where they do not apply: not Linux with glibc (macOS, Windows,
        musl), or ``BRAIN_MTL_ALLOCATOR=system``.
    """
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; both are tried whatever the first returned.
    results = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, _NO_TRIMMING)]
    return all(result == 1 for result in results)
