"""A run never loses work and never keeps a diverged model; a checkpoint is checked before any subcommand uses it.

Each test here failed before the guarantee it names was built (docs/reliability.md lists them).
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from brain_mtl.checkpoints import read_checkpoint
from brain_mtl.commands.main import main
from brain_mtl.errors import CheckpointError
from brain_mtl.inference import load_checkpoint
from tests.task.conftest import REPO, state_dict_of


class DecliningScore(Callback):
    """Logs ``val/declining`` = -epoch: only epoch 0 is ever the best, so later epochs never improve it."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("val/declining", -float(trainer.current_epoch))


class KillMidEpoch(Callback):
    """SIGKILL this process in the middle of an epoch: no handler, no clean-up, as with ``kill -9``."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeightsAfterEpoch(Callback):
    """Set one weight to NaN at the end of a training epoch, as a diverging optimiser step would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                weight = next(pl_module.parameters())  # any memory layout (channels-last included)
                weight[(0,) * weight.dim()] = float("nan")


def _edit(config: Path, **changes) -> Path:
    """Apply ``changes`` to a YAML config in place: ``callbacks`` is appended, ``checkpoint`` updates the checkpoint
    callback's init_args, other keys are ``section.key`` paths."""
    data = yaml.safe_load(config.read_text())
    trainer = data["trainer"]
    for callback in changes.pop("callbacks", []):
        trainer["callbacks"].append(callback)
    for key, value in changes.pop("checkpoint", {}).items():
        for callback in trainer["callbacks"]:
            if callback["class_path"].endswith("Checkpoint"):
                callback["init_args"][key] = value
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    config.write_text(yaml.safe_dump(data))
    return config


def _declining(config: Path) -> Path:
    return _edit(
        config,
        callbacks=[{"class_path": f"{__name__}.DecliningScore"}],
        checkpoint={"monitor": "val/declining", "mode": "max", "filename": "best-epoch{epoch:02d}"},
    )


def _epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


# ---------------------------------------------------------------------------------------------------------------
# last.ckpt is the last epoch; kill -9 loses at most the epoch in progress
# ---------------------------------------------------------------------------------------------------------------
def test_last_checkpoint_follows_every_epoch_when_the_score_stops_improving(make_config, tmp_path):
    config = _declining(make_config(tmp_path, epochs=3))
    assert main(["fit", "--config", str(config)]) == 0
    folder = tmp_path / "checkpoints"
    assert _epoch_of(folder / "last.ckpt") == 2  # Lightning's ModelCheckpoint left it at epoch 0
    assert [p.name for p in folder.glob("best-*.ckpt")] == ["best-epoch00.ckpt"]  # the best kept apart
    assert not list(folder.glob("*.part"))


def _fit_until_killed(config: Path) -> None:
    """Run ``fit`` in a child process that a KillMidEpoch callback ends with SIGKILL."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        # The same thread count as this process: float sums in another order would break bit-identical weights.
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    process = subprocess.run(
        [sys.executable, "-m", "brain_mtl", "fit", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]


def test_sigkill_mid_epoch_then_resume_ends_with_the_uninterrupted_weights(make_config, tmp_path):
    straight = _declining(make_config(tmp_path / "straight", epochs=4))
    assert main(["fit", "--config", str(straight)]) == 0

    run = tmp_path / "killed"
    killed = _edit(
        _declining(make_config(run, epochs=4)),
        callbacks=[{"class_path": f"{__name__}.KillMidEpoch", "init_args": {"epoch": 2, "batch": 2}}],
    )
    _fit_until_killed(killed)
    # Killed in epoch 2 after a non-improving epoch 1: last.ckpt holds epoch 1, not the best epoch 0.
    assert _epoch_of(run / "checkpoints" / "last.ckpt") == 1

    resumed = _declining(make_config(run, epochs=4))
    assert main(["fit", "--config", str(resumed), "--ckpt_path", "last"]) == 0
    assert _epoch_of(run / "checkpoints" / "last.ckpt") == 3
    expected = state_dict_of(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    got = state_dict_of(run / "checkpoints" / "last.ckpt")
    mismatched = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not mismatched, f"{len(mismatched)} tensors differ, e.g. {mismatched[:3]}"


def test_mid_epoch_saves_keep_last_within_the_epoch_and_resume(make_config, tmp_path):
    run = tmp_path / "run"
    killed = _edit(
        make_config(run, epochs=2),
        checkpoint={"every_n_train_steps": 2, "save_top_k": 0, "monitor": None},
        callbacks=[{"class_path": f"{__name__}.KillMidEpoch", "init_args": {"epoch": 1, "batch": 3}}],
    )
    _fit_until_killed(killed)
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    in_epoch = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert saved["epoch"] == 1 and in_epoch == 2  # saved mid-epoch, after the 2nd batch of epoch 1 (killed in the 4th)
    assert list((run / "checkpoints").iterdir()) == [run / "checkpoints" / "last.ckpt"]  # save_top_k 0: last only

    resumed = _edit(make_config(run, epochs=2), checkpoint={"every_n_train_steps": 2, "save_top_k": 0, "monitor": None})
    assert main(["fit", "--config", str(resumed), "--ckpt_path", "last"]) == 0
    assert _epoch_of(run / "checkpoints" / "last.ckpt") == 1


def test_a_write_interrupted_halfway_leaves_the_previous_checkpoint_whole(make_config, tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io.torch_plugin import TorchCheckpointIO

    original = TorchCheckpointIO.save_checkpoint
    calls = {"n": 0}

    def dies_on_the_third_write(self, checkpoint, path, storage_options=None):
        calls["n"] += 1
        if calls["n"] < 3:  # epoch 0: the best file and last.ckpt
            return original(self, checkpoint, path, storage_options)
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")  # what a killed writer leaves
        raise OSError("killed while writing")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", dies_on_the_third_write)
    config = _declining(make_config(tmp_path, epochs=2))
    with pytest.raises(OSError, match="killed while writing"):
        main(["fit", "--config", str(config)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _epoch_of(last) == 0  # whole, from the previous save
    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", original)
    assert main(["fit", "--config", str(_declining(make_config(tmp_path, epochs=2))), "--ckpt_path", "last"]) == 0
    assert _epoch_of(last) == 1
    assert not list(last.parent.glob("*.part"))  # the leftover of the killed write was removed


def test_an_empty_checkpoint_gives_one_line_naming_it(make_config, tmp_path, capsys):
    config = make_config(tmp_path)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"")
    assert main(["test", "--config", str(config), "--ckpt_path", str(folder / "last.ckpt")]) == 1
    err = capsys.readouterr().err
    assert "last.ckpt is empty (0 bytes)" in err and "Traceback" not in err
    assert main(["fit", "--config", str(config), "--ckpt_path", "last"]) == 1
    assert "no usable last checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# No code runs from a checkpoint, local or remote
# ---------------------------------------------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields its base URL, stops afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_a_crafted_checkpoint_served_over_http_runs_no_code(
    make_config, tmp_path, served, monkeypatch, subcommand, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # where torch.hub keeps downloads
    www, url = served
    marker = tmp_path / "code_ran"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": _RunsCode(marker)}, www / "evil.ckpt")
    config = make_config(tmp_path / "run")
    assert main([subcommand, "--config", str(config), "--ckpt_path", f"{url}/evil.ckpt"]) == 1
    assert not marker.exists()
    assert "refused" in capsys.readouterr().err


def test_a_crafted_local_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Divergence stops the run; nothing non-finite is saved, picked by `last` or predicted with
# ---------------------------------------------------------------------------------------------------------------
def test_a_too_large_learning_rate_stops_with_the_step_and_no_nan_checkpoint(make_config, tmp_path, capsys):
    config = make_config(tmp_path, epochs=3, overrides={"model.lr": 1.0e6, "model.lr_schedule": "constant"})
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "training diverged: the training loss is" in err and "global step" in err
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        read_checkpoint(path)  # every file written is finite (raises otherwise)


def test_weights_turned_nan_are_not_saved_and_the_last_good_checkpoint_is_named(make_config, tmp_path, capsys):
    config = _edit(
        make_config(tmp_path, epochs=3),
        callbacks=[{"class_path": f"{__name__}.PoisonWeightsAfterEpoch", "init_args": {"epoch": 1}}],
    )
    assert main(["fit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert "the weights are not finite" in err and "epoch 1" in err and str(last) in err
    assert _epoch_of(last) == 0
    read_checkpoint(last)


def test_last_passes_over_a_newer_non_finite_checkpoint_and_predict_refuses_it(
    make_config, tiny_root, tmp_path, capsys
):
    config = make_config(tmp_path)
    assert main(["fit", "--config", str(config)]) == 0
    folder = tmp_path / "checkpoints"
    content = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    first = next(k for k, v in content["state_dict"].items() if v.is_floating_point())
    content["state_dict"][first].fill_(float("nan"))
    torch.save(content, folder / "last-v1.ckpt")  # newer, as a diverged second run would have left it
    os.utime(folder / "last-v1.ckpt", (1e10, 1e10))

    capsys.readouterr()
    assert main(["test", "--config", str(config), "--ckpt_path", "last"]) == 0
    err = capsys.readouterr().err
    assert "passed over a newer file" in err and "last-v1.ckpt holds non-finite weights" in err

    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_checkpoint(folder / "last-v1.ckpt")
    out = tmp_path / "pred"
    scan = next(tiny_root.rglob("*.jpg"))
    assert (
        main(
            ["predict-images", "--ckpt_path", str(folder / "last-v1.ckpt"), "--input", str(scan), "--output", str(out)]
        )
        != 0
    )
    assert "non-finite weights" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--ckpt_path",
                str(folder / "last-v1.ckpt"),
                "--format",
                "state_dict",
                "--output",
                str(tmp_path / "m.pth"),
            ]
        )
        != 0
    )
    assert "non-finite weights" in capsys.readouterr().err
    assert not (tmp_path / "m.pth").exists()


# ---------------------------------------------------------------------------------------------------------------
# A checkpoint that differs from the config
# ---------------------------------------------------------------------------------------------------------------
def test_a_checkpoint_with_another_architecture_and_size_is_used_with_its_own(make_config, tmp_path, capsys):
    trained = tmp_path / "trained"
    assert main(["fit", "--config", str(make_config(trained))]) == 0  # base_channels 4, 64 px
    ckpt = trained / "checkpoints" / "last.ckpt"

    other = make_config(tmp_path / "other", overrides={"model.base_channels": 8, "data.image_size": 128})
    capsys.readouterr()
    assert main(["test", "--config", str(other), "--ckpt_path", str(ckpt)]) == 0
    err = capsys.readouterr().err
    assert "model.base_channels: checkpoint 4, config 8 -> using 4" in err
    assert "data.image_size: checkpoint 64, config 128 -> using 64" in err
    saved = yaml.safe_load((tmp_path / "other" / "tensorboard").glob("version_*/config.yaml").__next__().read_text())
    assert saved["model"]["base_channels"] == 4 and saved["data"]["image_size"] == 64

    # Resuming a fit with a config that disagrees resumes the checkpoint's network instead of failing.
    resumed = make_config(trained, epochs=2, overrides={"model.base_channels": 8})
    assert main(["fit", "--config", str(resumed), "--ckpt_path", "last"]) == 0
    assert "model.base_channels: checkpoint 4, config 8 -> using 4" in capsys.readouterr().err
    assert _epoch_of(ckpt) == 1


def test_the_fit_config_is_unchanged_when_the_checkpoint_agrees(make_config, tmp_path, capsys):
    config = make_config(tmp_path, epochs=2)
    assert main(["fit", "--config", str(make_config(tmp_path, epochs=1))]) == 0
    capsys.readouterr()
    assert main(["fit", "--config", str(config), "--ckpt_path", "last"]) == 0
    assert "differs from the configuration" not in capsys.readouterr().err
