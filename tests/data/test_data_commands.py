"""The data commands: ``brain_mtl synth`` and ``brain_mtl check-data``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from brain_mtl.classes import CLASS_NAMES
from brain_mtl.commands.data import check_data_main, synth_main


# Commands
# ------------------------------------------------------------------------------------------------------------
def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "s"
    preview = tmp_path / "preview.png"
    assert (
        synth_main(["--root", str(root), "--train", "8", "--test", "4", "--seed", "1", "--preview", str(preview)]) == 0
    )
    out = capsys.readouterr().out
    assert "train: 8 images" in out and "test: 4 images" in out
    grid = cv2.imread(str(preview))
    assert grid is not None and grid.shape[0] > 100
    assert synth_main(["--root", str(root), "--train", "8"]) == 1
    assert "already holds a dataset" in capsys.readouterr().err


def test_check_data_command_good_and_bad(synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert check_data_main(["--root", str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    for name in CLASS_NAMES:
        assert name in out
    assert "0 error(s)" in out and "image sizes" in out and "tumour area" in out and "duplicates" in out

    assert check_data_main(["--root", str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and str(tmp_path / "missing") in out

    assert check_data_main(["--root", str(synthetic_root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["errors"] == 0
