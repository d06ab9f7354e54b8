"""The command line refuses what cannot work with one ``error:`` line: no untrained test, no bad value, no
traceback, no second fit writing the first one's checkpoints."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from brain_mtl.commands.main import main

HOLD = """
import sys, time
from brain_mtl.files import RunLock
lock = RunLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(120)
"""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_ckpt_path_last_without_a_run_never_scores_an_untrained_network(make_config, tmp_path, capsys, subcommand):
    config = make_config(tmp_path / "run")
    assert main([subcommand, "--config", str(config), "--ckpt_path", "last"]) == 1
    line = one_error_line(capsys)
    assert "--ckpt_path last: no last checkpoint in" in line and f"no trained network to {subcommand}" in line
    assert not list((tmp_path / "run").rglob("report.json"))


@pytest.mark.parametrize(
    ("option", "value", "key"),
    [
        ("--data.batch_size", "-4", "data.batch_size"),
        ("--data.batch_size", "0", "data.batch_size"),
        ("--data.num_workers", "-1", "data.num_workers"),
        ("--data.val_fraction", "1.0", "data.val_fraction"),
        ("--model.mask_threshold", "2", "model.mask_threshold"),
    ],
)
def test_values_out_of_range_are_refused_by_their_type(make_config, tmp_path, capsys, option, value, key):
    config = make_config(tmp_path / "run")
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(config), option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_an_image_size_the_network_cannot_take_is_one_line_with_the_sizes_that_work(make_config, tmp_path, capsys):
    config = make_config(tmp_path / "run")  # depth 2: sides must be multiples of 4
    assert main(["fit", "--config", str(config), "--data.image_size", "66"]) == 2
    line = one_error_line(capsys)
    assert "data.image_size 66 is not a multiple of 4" in line and "use 64 or 68" in line


@pytest.mark.parametrize("bad", ["sixteen", [4, 8], None])
def test_a_checkpoint_with_settings_of_the_wrong_type_is_one_line(make_config, tmp_path, capsys, bad):
    from brain_mtl.task.module import BrainTumorModule

    module = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8)
    hparams = dict(module.hparams)
    hparams["base_channels"] = bad
    ckpt = tmp_path / "odd.ckpt"
    torch.save(
        {"state_dict": module.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": "2.6.0"}, ckpt
    )
    config = make_config(tmp_path / "run")
    code = main(["test", "--config", str(config), "--ckpt_path", str(ckpt)])
    assert code in (1, 2)
    assert "base_channels" in one_error_line(capsys)
    images = tmp_path / "in"
    images.mkdir()
    assert cv2.imwrite(str(images / "a.png"), np.zeros((32, 32), np.uint8))
    code = main(["predict-images", "--ckpt_path", str(ckpt), "--input", str(images), "--output", str(tmp_path / "o")])
    assert code == 1
    assert "odd.ckpt" in one_error_line(capsys)


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_bytes(bytes(range(256)) * 4)
    assert main(["fit", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert str(config) in line and "not a text (YAML) file" in line


def test_a_second_fit_in_the_same_folder_stops_and_names_the_first(make_config, tmp_path, capsys):
    config = make_config(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run" / "checkpoints")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["fit", "--config", str(config)]) == 1
        line = one_error_line(capsys)
        assert f"is in use by another run (pid {holder.pid} on " in line
        assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    finally:
        holder.kill()
        holder.wait()
    assert main(["fit", "--config", str(config)]) == 0  # once the other process is gone
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_default_root_dir_moves_the_checkpoints_and_the_logs(make_config, tmp_path):
    config = make_config(tmp_path / "run")
    content = yaml.safe_load(config.read_text())  # as shipped: no dirpath, no save_dir
    content["trainer"]["logger"]["init_args"].pop("save_dir")
    for callback in content["trainer"]["callbacks"]:
        callback.get("init_args", {}).pop("dirpath", None)
    config.write_text(yaml.safe_dump(content))
    moved = tmp_path / "moved"
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(moved)]) == 0
    assert (moved / "checkpoints" / "last.ckpt").is_file()
    assert list((moved / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert main(["test", "--config", str(config), "--trainer.default_root_dir", str(moved), "--ckpt_path", "last"]) == 0
