"""Lightning's StochasticWeightAveraging from a YAML config, with the task's optimizer, schedule and checkpoints.

``BrainTumorModule.configure_optimizers`` returns AdamW with two parameter groups (decoder and heads, encoder) and,
with ``lr_schedule: cosine`` (the quickstart config), a LambdaLR stepped every batch; the config also brings
RunCheckpoint (``last.ckpt`` at every epoch, atomically, finite weights only). SWA must run under all of it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback

from brain_mtl.commands.main import main
from brain_mtl.inference import load_checkpoint
from tests.task.conftest import state_dict_of

SWA = {
    "class_path": "lightning.pytorch.callbacks.StochasticWeightAveraging",
    "init_args": {"swa_lrs": 1e-3, "swa_epoch_start": 2},
}

# Filled by RecordWeights during an in-process fit (the CLI builds the callback from its class path).
RECORDED: dict[str, object] = {}


class RecordWeights(Callback):
    """Keep the parameters at the start of every training epoch, and at the end of the fit with SWA's state."""

    def on_fit_start(self, trainer, pl_module) -> None:
        RECORDED.clear()
        RECORDED["epoch_start"] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Runs after StochasticWeightAveraging's hook (it comes earlier in trainer.callbacks).
        RECORDED["epoch_start"][trainer.current_epoch] = _parameters(pl_module)
        RECORDED.setdefault("lr_schedulers", []).append(
            [type(config.scheduler).__name__ for config in trainer.lr_scheduler_configs]
        )

    def on_fit_end(self, trainer, pl_module) -> None:
        swa = next(c for c in trainer.callbacks if type(c).__name__ == "StochasticWeightAveraging")
        RECORDED["final"] = _parameters(pl_module)
        RECORDED["n_averaged"] = int(swa.n_averaged)
        RECORDED["swa_start"], RECORDED["swa_end"] = swa.swa_start, swa.swa_end
        RECORDED["max_epochs"] = trainer.max_epochs


def _parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _with_callbacks(config: Path, *callbacks: dict) -> Path:
    data = yaml.safe_load(config.read_text())
    data["trainer"]["callbacks"].extend(callbacks)
    config.write_text(yaml.safe_dump(data))
    return config


def test_swa_from_yaml_averages_the_weights_under_the_task_schedule(make_config, tmp_path):
    config = _with_callbacks(make_config(tmp_path / "swa", epochs=3), SWA, {"class_path": f"{__name__}.RecordWeights"})
    data = yaml.safe_load(config.read_text())
    assert data["model"]["lr_schedule"] == "cosine"  # the step-interval LambdaLR that SWA replaces
    assert main(["fit", "--config", str(config)]) == 0

    # SWA (epochs 1 and 2 with swa_epoch_start 2) averaged the weights it saw at the start of each of its epochs,
    # i.e. after epochs 0 and 1, and put the average into the module at the start of an extra epoch (3) that only
    # re-estimates BatchNorm statistics (no backward, no step).
    assert (RECORDED["swa_start"], RECORDED["swa_end"], RECORDED["max_epochs"]) == (1, 2, 3)
    assert RECORDED["n_averaged"] == 2
    starts = RECORDED["epoch_start"]
    assert sorted(starts) == [0, 1, 2, 3]
    # Our per-step LambdaLR until SWA starts, then SWALR per epoch (Lightning warns that it swaps a step-interval
    # scheduler; the averaging does not depend on it).
    assert RECORDED["lr_schedulers"][:2] == [["LambdaLR"], ["SWALR"]]
    final = RECORDED["final"]
    for name, value in final.items():
        expected = (starts[1][name] + starts[2][name]) / 2
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(starts[3][name], value, rtol=0, atol=0, msg=name)  # epoch 3 took no step
    assert any(not torch.equal(starts[2][n], starts[1][n]) for n in final)  # the optimizer did move in between

    # last.ckpt (RunCheckpoint, written after the BatchNorm epoch) holds the averaged weights, and it loads with
    # weights_only=True for prediction, as every checkpoint of a run must.
    last = tmp_path / "swa" / "checkpoints" / "last.ckpt"
    saved = state_dict_of(last)
    for name, value in final.items():
        assert torch.equal(saved[name], value), name
    loaded = dict(load_checkpoint(last).model.named_parameters())
    assert torch.equal(loaded["segmentation_head.weight"], final["model.segmentation_head.weight"])


def test_swa_changes_the_result_of_the_same_run(make_config, tmp_path):
    plain = make_config(tmp_path / "plain", epochs=3)
    assert main(["fit", "--config", str(plain)]) == 0
    averaged = _with_callbacks(make_config(tmp_path / "swa", epochs=3), SWA)
    assert main(["fit", "--config", str(averaged)]) == 0
    without, with_swa = (state_dict_of(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("plain", "swa"))
    assert without.keys() == with_swa.keys()
    assert any(not torch.equal(without[k], with_swa[k]) for k in without if k.startswith("model."))
