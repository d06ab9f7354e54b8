"""Hostile but realistic use of export and predict-images: their files are never destroyed, half-written or
written through a link, their values are checked where they are defined, their tables run no formulas."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from brain_mtl.checkpoints import read_checkpoint
from brain_mtl.commands.main import main
from brain_mtl.errors import CheckpointError
from brain_mtl.files import RunLock, atomic_write_bytes, csv_cell

REPO = Path(__file__).resolve().parents[2]


def scans(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 40), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), pixels)
    return folder


def test_export_never_replaces_its_own_checkpoint(tmp_path, tiny_ckpt, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    before = ckpt.read_bytes()
    code = main(["export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "." / "model.ckpt"),
                 "--format", "state_dict"])  # fmt: skip
    assert code == 2
    assert "is the checkpoint given as --ckpt_path" in capsys.readouterr().err
    assert ckpt.read_bytes() == before


def test_a_failed_export_leaves_the_previous_file_whole(tmp_path, tiny_ckpt, monkeypatch, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", "--ckpt_path", str(tiny_ckpt), "--output", str(out), "--format", "state_dict"]) == 0
    good = out.read_bytes()

    def half_then_full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"\x00" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full_disk)
    code = main(["export", "--ckpt_path", str(tiny_ckpt), "--output", str(out), "--format", "state_dict"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: cannot write {out}: No space left on device" in err
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left


@pytest.mark.parametrize("where", ["read_only", "under_a_file"])
def test_export_to_a_folder_it_cannot_write_is_one_error_line(tmp_path, tiny_ckpt, capsys, where):
    if where == "read_only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        out = folder / "model.pt"
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "model.pt"
    code = main(["export", "--ckpt_path", str(tiny_ckpt), "--output", str(out), "--format", "state_dict"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Traceback" not in err


def test_predict_images_tables_run_no_formulas(tmp_path, tiny_ckpt, monkeypatch):
    folder = scans(tmp_path / "in", ["=HYPERLINK(1).png", "+1.png", "-2.png", "@x.png", "plain.png"])
    monkeypatch.chdir(folder)  # files listed from "." are named bare: the cells start with their first character
    out = tmp_path / "out"
    assert main(["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", ".", "--output", str(out)]) == 0
    with open(out / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["file"] for row in rows) == ["'+1.png", "'-2.png", "'=HYPERLINK(1).png", "'@x.png", "plain.png"]
    assert not any(row["stem"].startswith(("=", "+", "-", "@")) for row in rows)
    assert csv_cell(-2.5) == -2.5 and csv_cell("=a") == "'=a" and csv_cell("a=b") == "a=b"


def test_predict_images_replaces_a_link_in_its_output_folder_and_never_writes_through_it(tmp_path, tiny_ckpt):
    folder = scans(tmp_path / "in", ["scan.png"])
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "scan_mask.png").symlink_to(victim)
    (out / "predictions.csv").symlink_to(victim)
    args = ["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(folder), "--output", str(out)]
    assert main([*args, "--overwrite"]) == 0
    assert victim.read_text() == "precious"
    assert not (out / "scan_mask.png").is_symlink() and cv2.imread(str(out / "scan_mask.png")) is not None
    assert not (out / "predictions.csv").is_symlink()


@pytest.mark.parametrize(
    ("option", "value"), [("--image_size", "0"), ("--image_size", "-64"), ("--batch_size", "-3"), ("--batch_size", "0")]
)
def test_predict_images_refuses_sizes_that_are_not_positive(tmp_path, tiny_ckpt, capsys, option, value):
    folder = scans(tmp_path / "in", ["scan.png"])
    with pytest.raises(SystemExit) as exited:
        main(["predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(folder), "--output",
              str(tmp_path / "out"), option, value])  # fmt: skip
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert option.lstrip("-") in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_predict_images_on_a_full_disk_is_one_error_line(tmp_path, tiny_ckpt):
    folder = scans(tmp_path / "in", [f"scan{i}.png" for i in range(4)])
    out = tmp_path / "out"
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000)); "
        "from brain_mtl.commands.main import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "predict-images", "--ckpt_path", str(tiny_ckpt), "--input", str(folder),
         "--output", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BRAIN_MTL_ALLOCATOR": "system"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "error: cannot write" in done.stderr and "Traceback" not in done.stderr
    for png in out.glob("*.png"):  # every image left is whole
        assert cv2.imread(str(png)) is not None, png


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.json"
    target.write_text("old")

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_a_dangling_link_or_a_loop_beside_a_checkpoint_keeps_the_real_error(tmp_path):
    damaged = tmp_path / "model.ckpt"
    damaged.write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "gone.ckpt").symlink_to(tmp_path / "missing.ckpt")
    (tmp_path / "loop_a.ckpt").symlink_to(tmp_path / "loop_b.ckpt")
    (tmp_path / "loop_b.ckpt").symlink_to(tmp_path / "loop_a.ckpt")
    (tmp_path / "good.ckpt").write_bytes(b"x" * 10)
    with pytest.raises(CheckpointError, match="cannot read it as a checkpoint") as caught:
        read_checkpoint(damaged)
    assert "good.ckpt" in str(caught.value)
    with pytest.raises(CheckpointError, match="a link that leads to no file"):
        read_checkpoint(tmp_path / "loop_a.ckpt")


HOLD = """
import sys, time
from brain_mtl.files import RunLock
lock = RunLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(60)
"""


def test_a_run_folder_is_locked_by_one_process_and_freed_when_it_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OSError, match=rf"in use by another run \(pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(tmp_path)  # kill -9 released it
    lock.acquire()
    again = RunLock(tmp_path)
    again.acquire()  # this process already holds it: taken over, never a self-lockout
    again.release()
