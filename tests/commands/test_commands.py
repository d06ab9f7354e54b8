"""The commands outside Lightning's loop: one flag style, one registry, one error path."""

from __future__ import annotations

import re
import shutil
from typing import Literal

import pytest

from brain_mtl.commands import COMMANDS, command_main
from brain_mtl.commands.base import UsageError, command_parser, run_command
from brain_mtl.commands.main import main


def _example(
    root: str,
    files: list[str],
    mode: Literal["a", "b"] = "a",
    limit: float | None = None,
    fast: bool = False,
    overlay: bool = True,
) -> int:
    """An example command.

    Args:
        root: a folder.
        files: some files.
        mode: a or b.
        limit: a bound.
        fast: go fast.
        overlay: draw overlays.
    """
    if limit is not None and limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    return 0


def _parse(*argv: str):
    return command_parser(_example, "brain_mtl example").parse_args(["--root", "r", "--files", "f", *argv])


def test_one_flag_rule_per_type():
    assert _parse().as_dict() | {"config": None} == {
        "config": None,
        "root": "r",
        "files": ["f"],
        "mode": "a",
        "limit": None,
        "fast": False,
        "overlay": True,
    }
    # bool: bare, true/false, or no_ prefix.
    assert _parse("--fast").fast is True
    assert _parse("--fast", "false").fast is False
    assert _parse("--no_overlay").overlay is False
    assert _parse("--overlay", "false").overlay is False
    # list: several values after one flag.
    assert command_parser(_example, "x").parse_args(["--root", "r", "--files", "a", "b"]).files == ["a", "b"]
    assert _parse("--mode", "b", "--limit", "0.5").limit == 0.5


def test_bad_values_exit_with_status_2(capsys):
    for argv in (["--mode", "c"], ["--limit", "many"], ["--fast", "maybe"]):
        with pytest.raises(SystemExit) as info:
            _parse(*argv)
        assert info.value.code == 2, argv
    with pytest.raises(SystemExit) as info:
        command_parser(_example, "x").parse_args(["--files", "f"])  # --root is required
    assert info.value.code == 2
    assert "root" in capsys.readouterr().err


def test_options_can_come_from_a_yaml_file(tmp_path):
    config = tmp_path / "example.yaml"
    config.write_text("root: r\nfiles: [a, b]\nfast: true\n")
    parsed = command_parser(_example, "x").parse_args(["--config", str(config), "--mode", "b"])
    assert (parsed.root, parsed.files, parsed.fast, parsed.mode) == ("r", ["a", "b"], True, "b")


def test_usage_error_is_one_line_and_status_2(capsys):
    assert run_command(_example, ["--root", "r", "--files", "f", "--limit", "-1"], "x") == 2
    assert capsys.readouterr().err == "error: --limit must be >= 0, got -1.0\n"
    assert run_command(_example, ["--root", "r", "--files", "f"], "x") == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_registered_with_help_from_its_docstring(name, capsys):
    assert callable(command_main(name))
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: brain_mtl {name}" in out
    # One spelling: LightningCLI's underscores, never dashes inside an option name.
    options = set(re.findall(r"--[a-z][a-z_-]*", out))
    assert options and not [option for option in options if "-" in option[2:]], options


def test_old_dash_spellings_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["check-data", "--root", str(tmp_path), "--class-name-map", "notumor=no_tumor"])
    assert info.value.code == 2


def test_a_checkpoint_that_cannot_be_loaded_is_one_error_line_for_every_command(tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"
    scan = tmp_path / "scan.png"
    scan.write_bytes(b"")
    commands = [
        ["predict-images", "--ckpt_path", str(missing), "--input", str(scan), "--output", str(tmp_path / "out")],
        ["export", "--ckpt_path", str(missing), "--output", str(tmp_path / "model.onnx")],
    ]
    for argv in commands:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: cannot load the checkpoint ") and err.count("\n") == 1, err
        assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "model.onnx").exists()


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("commands") / "data"
    assert main(["synth", "--root", str(root), "--train", "8", "--test", "4", "--seed", "5"]) == 0
    return root


def test_synth_duplicates_flag_and_a_negative_count(tmp_path, capsys):
    for flag in (["--no_duplicates"], ["--duplicates", "false"]):
        root = tmp_path / flag[-1]
        assert main(["synth", "--root", str(root), "--train", "8", "--test", "4", *flag]) == 0
        assert "duplicates: 0 within train, 0 train->test" in capsys.readouterr().out
    assert main(["synth", "--root", str(tmp_path / "neg"), "--train", "-1"]) == 2
    assert capsys.readouterr().err == "error: --train and --test must be >= 0, got -1 and 100\n"
    assert not (tmp_path / "neg").exists()


def test_check_data_class_name_map_quick_and_a_bad_pair(small_root, tmp_path, capsys):
    root = tmp_path / "renamed"
    shutil.copytree(small_root, root)
    for split in ("train", "test"):
        folder = root / "classification_task" / split
        (folder / "no_tumor").rename(folder / "healthy")
    assert main(["check-data", "--root", str(root)]) == 1
    assert "healthy" in capsys.readouterr().out
    assert main(["check-data", "--root", str(root), "--class_name_map", "healthy=no_tumor", "--quick"]) == 0
    assert main(["check-data", "--root", str(root), "--class_name_map", "healthy=normal"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --class_name_map expects SPELLING=CLASS") and "'healthy=normal'" in err
