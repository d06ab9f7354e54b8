"""The learning-rate schedule on a wall clock: ``lr_schedule_clock: time`` ends the cosine at ``trainer.max_time``."""

from __future__ import annotations

import itertools
import math

import pytest
import yaml
from lightning.pytorch import Callback

from brain_mtl.commands.main import main
from brain_mtl.task.optim import lr_factor

# Filled by RecordLearningRate during an in-process fit (the CLI builds the callback from its class path).
RECORDED: dict[str, list] = {}


class RecordLearningRate(Callback):
    """Keep the learning rate after every optimizer step, and the epochs the fit had and ran."""

    def on_fit_start(self, trainer, pl_module) -> None:
        RECORDED.clear()
        RECORDED.update(lr=[], epochs=[])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        RECORDED["lr"].append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_fit_end(self, trainer, pl_module) -> None:
        RECORDED["epochs"] = [trainer.current_epoch, trainer.max_epochs]
        RECORDED["saved_lambdas"] = trainer.lr_scheduler_configs[0].scheduler.state_dict()["lr_lambdas"]
        RECORDED["batches_per_epoch"] = trainer.num_training_batches


def fit_on_the_clock(make_config, out, epochs: int, warmup: float, max_time: str, **trainer) -> None:
    """A tiny fit with a cosine on the clock, recorded by RecordLearningRate."""
    overrides = {
        "model.lr_schedule": "cosine",
        "model.lr_schedule_clock": "time",
        "model.warmup_epochs": warmup,
        "trainer.max_time": max_time,
        **{f"trainer.{key}": value for key, value in trainer.items()},
    }
    config = make_config(out, epochs=epochs, overrides=overrides)
    data = yaml.safe_load(config.read_text())
    data["trainer"]["callbacks"].append({"class_path": f"{__name__}.RecordLearningRate"})
    config.write_text(yaml.safe_dump(data))
    assert main(["fit", "--config", str(config)]) == 0


def test_the_decay_follows_the_larger_of_the_step_and_the_time_fraction():
    half = 0.5 * (1 + math.cos(math.pi * 0.5))
    assert lr_factor(10, 0, 1000, cosine=True, elapsed=lambda: 0.5) == pytest.approx(half)  # time ahead of steps
    assert lr_factor(500, 0, 1000, cosine=True, elapsed=lambda: 0.01) == pytest.approx(half)  # steps ahead of time
    assert lr_factor(10, 0, 1000, cosine=True, elapsed=lambda: 1.0) == pytest.approx(0.0)
    assert lr_factor(10, 0, 1000, cosine=True, elapsed=lambda: 3.0) == pytest.approx(0.0)  # past the limit: stays 0
    assert lr_factor(3, 10, 1000, cosine=True, elapsed=lambda: 1.0) == pytest.approx(4 / 11)  # warm-up keeps to steps
    assert lr_factor(10, 0, 1000, cosine=False, elapsed=lambda: 0.9) == 1.0  # constant ignores the clock


def test_a_fit_on_the_clock_decays_to_zero_by_its_time_limit(make_config, tmp_path):
    # far more epochs than the limit allows: the time limit ends the fit
    fit_on_the_clock(make_config, tmp_path / "clock", epochs=10_000, warmup=0.0, max_time="00:00:00:08")
    lr, (epoch, max_epochs) = RECORDED["lr"], RECORDED["epochs"]
    assert epoch < max_epochs - 1  # stopped by the clock
    assert len(lr) > 20
    peak = lr[0]
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(lr))  # decays, never rises
    assert lr[len(lr) // 2] < 0.9 * peak  # the decay runs through the fit (10,000 epochs of steps would be ~flat)
    assert lr[-1] < 0.05 * peak  # and has (nearly) reached 0 when the time is up
    assert RECORDED["saved_lambdas"] == [{}, {}]  # the checkpoint holds no clock (no Timer, no trainer pickled)


def test_warm_up_on_the_clock_lasts_epochs_not_a_share_of_an_upper_bound(make_config, tmp_path):
    # max_steps is only a ceiling here: warm-up over half of it would outlast the time limit and never decay
    fit_on_the_clock(make_config, tmp_path / "warm", epochs=-1, warmup=1.0, max_time="00:00:00:06", max_steps=1_000_000)
    lr, per_epoch = RECORDED["lr"], RECORDED["batches_per_epoch"]
    assert len(lr) > 2 * per_epoch
    peak = max(lr)
    assert lr.index(peak) <= per_epoch  # the rise ends with the first epoch
    assert lr[-1] < 0.1 * peak  # and the clock then brings it down


def test_the_clock_without_a_time_limit_is_a_usage_error(make_config, tmp_path, capsys):
    config = make_config(tmp_path / "noclock", overrides={"model.lr_schedule_clock": "time"})
    assert main(["fit", "--config", str(config)]) == 2
    assert "max_time" in capsys.readouterr().err


def test_a_schedule_without_any_length_is_a_usage_error(make_config, tmp_path, capsys):
    overrides = {"model.lr_schedule_clock": "time", "trainer.max_time": "00:00:00:05", "trainer.max_epochs": -1}
    config = make_config(tmp_path / "endless", overrides=overrides)
    assert main(["fit", "--config", str(config)]) == 2
    assert "trainer.max_epochs is -1" in capsys.readouterr().err
