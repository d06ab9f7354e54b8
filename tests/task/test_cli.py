"""The command line, end to end, on tiny generated data: fit, reproducibility, resume, subclassing, logs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from brain_mtl import BrainTumorDataModule, BrainTumorModule, __version__
from brain_mtl.commands.main import main
from tests.task.conftest import QUICKSTART, REPO, image_tags, scalars, state_dict_of


def test_usage_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "synth", "check-data", "predict-images", "export"):
        assert re.search(rf"brain_mtl {re.escape(name)}\s", out), name
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_fit_help_documents_model_and_data_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    # Each argument appears with the first words of its docstring line.
    assert "--model.base_channels" in out
    assert "channels of the first U-Net stage" in out
    assert "--model.mask_loss" in out
    assert "--data.root" in out
    assert "--data.val_fraction" in out
    assert "--data.healthy_in_segmentation" in out


def test_fit_logs_losses_metrics_pictures_and_checkpoints(make_config, tmp_path):
    config = make_config(tmp_path, epochs=2)
    assert main(["fit", "--config", str(config)]) == 0

    tags = scalars(tmp_path)
    for tag in (
        "train/loss_step",
        "train/loss",
        "train/loss/mask",
        "train/loss/class",
        "train/seg/dice",
        "train/cls/acc",
        "val/loss",
        "val/loss/mask",
        "val/loss/class",
        "val/seg/dice",
        "val/seg/iou",
        "val/seg/pixel_acc",
        "val/seg/false_mask_rate",
        "val/cls/acc",
        "val/cls/precision",
        "val/cls/recall",
        "val/cls/f1",
        "val/score",
    ):
        assert tag in tags, f"{tag} missing; logged: {sorted(tags)}"
    assert len(tags["val/seg/dice"]) == 2  # once per epoch
    assert all(0.0 <= value <= 1.0 for _, value in tags["val/cls/acc"])
    images = image_tags(tmp_path)
    assert "val/predictions" in images
    assert any("confusion" in tag for tag in images)
    hparams = list(tmp_path.rglob("hparams.yaml"))
    assert hparams and "base_channels" in hparams[0].read_text()

    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("epoch") for name in checkpoints), checkpoints
    restored = BrainTumorModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert restored.hparams.base_channels == 4
    assert restored.model.output_stride == 4


def test_two_fits_with_one_seed_are_identical(make_config, tmp_path):
    for run in ("a", "b"):
        assert main(["fit", "--config", str(make_config(tmp_path / run, epochs=1))]) == 0
    a, b = scalars(tmp_path / "a"), scalars(tmp_path / "b")
    assert a.keys() == b.keys()
    for tag in ("train/loss/mask", "val/seg/dice", "val/cls/acc", "val/loss"):
        assert a[tag] == b[tag], tag
    weights_a = state_dict_of(tmp_path / "a" / "checkpoints" / "last.ckpt")
    weights_b = state_dict_of(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(make_config, tmp_path):
    # Augmentation and dropout stay on, so the random streams must be restored, not only the weights.
    straight = make_config(tmp_path / "straight", epochs=2)
    assert main(["fit", "--config", str(straight)]) == 0

    # The same config (max_epochs 2, so the same cosine schedule), stopped after one epoch as if killed.
    interrupted = tmp_path / "interrupted"
    assert main(["fit", "--config", str(make_config(interrupted, epochs=2, stop_after=1))]) == 0
    assert torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    resumed = make_config(interrupted, epochs=2)
    assert main(["fit", "--config", str(resumed), "--ckpt_path", "last"]) == 0

    expected = state_dict_of(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    got = state_dict_of(interrupted / "checkpoints" / "last.ckpt")
    assert torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    mismatched = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not mismatched, f"{len(mismatched)} tensors differ, e.g. {mismatched[:3]}"


def _docs_code_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_docs_subclass_example_fits(make_config, tmp_path):
    namespace: dict = {}
    exec(_docs_code_blocks(REPO / "docs" / "subclassing.md")[0], namespace)
    focal_module = namespace["FocalBrainTumorModule"]

    assert main(["fit", "--config", str(make_config(tmp_path))], model_class=focal_module) == 0

    restored = focal_module.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu")
    assert type(restored.criterion).__name__ == "FocalJointLoss"
    # The override changes the loss: focal < cross-entropy on the same logits.
    logits, labels = torch.tensor([[2.0, 0.0, 0.0, 0.0]]), torch.tensor([0])
    assert restored.criterion.class_part(logits, labels) < BrainTumorModule().criterion.class_part(logits, labels)


@pytest.mark.parametrize(
    "config_name",
    [
        "brisc_unet.yaml",
        "brisc_attention_unet.yaml",
        "brisc_resnet34.yaml",
        "brisc_efficientnet_b0.yaml",
        "brisc_cpu.yaml",
    ],
)
def test_brisc_configs_run_on_a_brisc_layout_folder(make_config, tmp_path, config_name):
    # The shipped recipes, shrunk for the CPU: the YAML's structure is the shipped one. Pretrained encoders start
    # from random weights here: nothing in the tests downloads (tests/task/test_encoders_cli.py loads a local file).
    config = make_config(tmp_path, source=REPO / "configs" / config_name, overrides={"model.encoder_weights": None})
    assert main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true"]) == 0


def test_quickstart_config_runs_on_a_brisc_layout_folder(tiny_root, tmp_path):
    # The shipped quickstart as a user runs it with --data.root, only shortened (two batches) and kept in tmp.
    args = [
        "fit",
        "--config",
        str(QUICKSTART),
        "--data.root",
        str(tiny_root),
        "--data.num_workers",
        "0",
        "--data.image_size",
        "64",
        "--trainer.fast_dev_run",
        "2",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger",
        "false",
        "--trainer.callbacks",
        "[]",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(args) == 0


def test_ddp_on_two_cpu_processes_synchronises_metrics(make_config, tiny_root, tmp_path):
    """A DDP fit logs the same validation metrics as one process validating the same weights."""
    # DistributedSampler pads an odd-sized set with repeated images; even sizes keep the two runs comparable.
    even_split = {"data.val_fraction": 0.2}
    dm = BrainTumorDataModule(str(tiny_root), image_size=64, num_workers=0, val_fraction=0.2)
    dm.setup("fit")
    assert len(dm.segmentation_dataset("val")) % 2 == 0 and len(dm.classification_dataset("val")) % 2 == 0
    ddp_config = make_config(
        tmp_path / "ddp", overrides={"trainer.strategy": "ddp", "trainer.devices": 2, **even_split}
    )
    # The training loss of rank r is offset by 100 r (no gradient change): a train/loss synchronised over both
    # processes is the plain loss + 50; rank 0's own value would be the plain loss (about 1-2).
    script = tmp_path / "rank_offset_fit.py"
    script.write_text(
        "import sys\n"
        "from brain_mtl.commands.main import main\n"
        "from brain_mtl.task.module import BrainTumorModule\n"
        "class RankOffsetModule(BrainTumorModule):\n"
        "    def compute_loss(self, outputs, batch, stage):\n"
        "        parts = super().compute_loss(outputs, batch, stage)\n"
        "        return parts._replace(total=parts.total + 100.0 * self.global_rank) if stage == 'train' else parts\n"
        "sys.exit(main(sys.argv[1:], model_class=RankOffsetModule))\n"
    )
    subprocess.run(
        [sys.executable, str(script), "fit", "--config", str(ddp_config)], check=True, cwd=tmp_path, timeout=600
    )
    train_loss = scalars(tmp_path / "ddp")["train/loss"][-1][1]
    assert 45 < train_loss < 55, train_loss
    checkpoint = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    single = make_config(tmp_path / "single", overrides=even_split)
    assert main(["validate", "--config", str(single), "--ckpt_path", str(checkpoint)]) == 0
    ddp_values, single_values = scalars(tmp_path / "ddp"), scalars(tmp_path / "single")
    for tag in ("val/cls/acc", "val/cls/f1", "val/seg/dice", "val/seg/false_mask_rate"):
        assert ddp_values[tag][-1][1] == pytest.approx(single_values[tag][-1][1], abs=1e-6), tag

    # `test` under DDP writes the evaluation report once (rank 0) and every process returns.
    subprocess.run(
        [sys.executable, "-m", "brain_mtl", "test", "--config", str(ddp_config), "--ckpt_path", str(checkpoint)],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert len(list((tmp_path / "ddp").rglob("report.md"))) == 1


def test_fit_on_a_broken_folder_stops_before_training_and_names_every_bad_file(tiny_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(tiny_root, root)
    glioma = sorted((root / "classification_task" / "train" / "glioma").iterdir())[0]
    unknown = glioma.with_name("brisc2025_train_99999_xx_ax_t1.jpg")
    shutil.copy(glioma, unknown)
    mask = sorted((root / "segmentation_task" / "train" / "masks").iterdir())[0]
    mask.unlink()

    args = ["fit", "--config", str(QUICKSTART), "--data.root", str(root), "--data.num_workers", "0"]
    args += ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(unknown) in err and "unknown class code 'xx'" in err
    assert f"missing mask: no file named {mask.stem}." in err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("*.ckpt"))
