"""Shared test setup: keep runs offline, single-threaded enough for 2 cores, and out of the working tree.

``--torch-threads N`` (or the environment variable ``BRAIN_MTL_TEST_THREADS=N``) runs the whole suite with N
torch intra-op threads: set at session start, again at the start of every test module, and used by the folders
that otherwise pick their own count (``tests/inference`` uses 1). Child processes that tests start (``python -m
brain_mtl fit`` in a subprocess, DDP workers) get it through ``OMP_NUM_THREADS``, so that a run in a child and
one in the test process still compute the same. Without it each folder keeps its default. Tests that train must
pass with any count (``python -m pytest --torch-threads 1`` and ``--torch-threads 2``).
"""

import os

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# The tests call brain_mtl.commands.main.main in this process, and main() tunes the process's allocator as a
# command does (brain_mtl.commands.allocator): keep glibc's defaults for the test session;
# tests/task/test_speed_options.py tests the setting.
os.environ.setdefault("BRAIN_MTL_ALLOCATOR", "system")

THREADS_ENV = "BRAIN_MTL_TEST_THREADS"
"""Environment variable with the requested torch thread count; ``--torch-threads`` sets it for the session."""

pytest_plugins = ["pytester"]  # for testing these options themselves (tests/inference/test_torch_threads_option.py)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help=f"run every test with N torch intra-op threads (default: ${THREADS_ENV}, else each folder's own)",
    )


def requested_torch_threads() -> int | None:
    """The thread count asked for with ``--torch-threads`` or ``$BRAIN_MTL_TEST_THREADS``, else None."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"{THREADS_ENV} / --torch-threads must be a positive integer, got {value!r}")
    return int(value)


def pytest_configure(config: pytest.Config) -> None:
    option = config.getoption("--torch-threads", default=None)
    if option is not None:
        # Through the environment, so that conftests and helpers elsewhere read one source.
        os.environ[THREADS_ENV] = str(option)
    threads = requested_torch_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        # Child processes start with OMP_NUM_THREADS threads (this process has already read it).
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="module", autouse=True)
def _requested_torch_threads_per_module():
    # A test (or a library call) may change the count; each module starts again from the requested one.
    threads = requested_torch_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    yield


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
    """``make(train, test, seed, duplicates=True) -> root``: each synthetic dataset generated once per session."""
    from tests.fixtures import tiny_dataset

    made = {}

    def make(train: int, test: int, seed: int, duplicates: bool = True):
        key = (train, test, seed, duplicates)
        if key not in made:
            root = tmp_path_factory.mktemp(f"tiny_{train}_{test}_{seed}") / "brisc"
            made[key] = tiny_dataset(root, train, test, seed, duplicates)
        return made[key]

    return make
