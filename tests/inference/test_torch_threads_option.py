"""``--torch-threads N`` / ``BRAIN_MTL_TEST_THREADS=N`` (tests/conftest.py): the suite at a chosen thread count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

MODULES = {
    "test_first": """
        import os
        import torch

        def test_set_at_session_start():
            assert torch.get_num_threads() == int(os.environ["EXPECTED_THREADS"])

        def test_passed_on_to_child_processes():
            assert os.environ["OMP_NUM_THREADS"] == os.environ["EXPECTED_THREADS"]

        def test_a_test_that_changes_the_count():
            torch.set_num_threads(int(os.environ["EXPECTED_THREADS"]) + 1)
        """,
    "test_second": """
        import os
        import torch

        def test_set_again_for_the_next_module():
            assert torch.get_num_threads() == int(os.environ["EXPECTED_THREADS"])
        """,
}


@pytest.fixture
def suite(pytester, monkeypatch):
    # Also undo, after the test, what the inner session sets.
    monkeypatch.delenv("BRAIN_MTL_TEST_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(**MODULES)
    previous = torch.get_num_threads()
    torch.set_num_threads(4)  # neither requested count
    yield pytester
    torch.set_num_threads(previous)


def test_option_sets_the_count_for_every_module(suite, monkeypatch):
    monkeypatch.setenv("EXPECTED_THREADS", "1")
    suite.runpytest("--torch-threads", "1", "-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_environment_variable_sets_the_count(suite, monkeypatch):
    monkeypatch.setenv("EXPECTED_THREADS", "2")
    monkeypatch.setenv("BRAIN_MTL_TEST_THREADS", "2")
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_a_count_that_is_not_a_positive_integer_is_a_usage_error(suite, monkeypatch):
    monkeypatch.setenv("BRAIN_MTL_TEST_THREADS", "two")
    result = suite.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*BRAIN_MTL_TEST_THREADS*positive integer*"])
