"""The EvaluationReport callback inside trainer.test: files in the log folder, scalars in TensorBoard."""

import json

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from brain_mtl.evaluation import EvaluationReport

from .eval_fakes import FakeDataModule, FakeNet, make_samples


class TinyModule(pl.LightningModule):
    def __init__(self, mask_threshold: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = FakeNet()

    def forward(self, x):
        return self.model(x)

    def test_step(self, batch, batch_idx):
        out = self(batch["image"])
        self.log("test/dummy", out.class_logits.mean(), batch_size=len(batch["label"]))


class TinyDataModule(pl.LightningDataModule):
    def __init__(self, samples):
        super().__init__()
        self.fake = FakeDataModule(samples)

    def test_dataloader(self):
        return self.fake.evaluation_dataloader("test")

    def evaluation_dataloader(self, split="test"):
        return self.fake.evaluation_dataloader(split)


def make_trainer(tmp_path, logger, callback):
    return pl.Trainer(
        default_root_dir=tmp_path,
        logger=logger,
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def test_callback_writes_report_and_logs_scalars(tmp_path, caplog):
    logger = TensorBoardLogger(tmp_path / "logs", name="run")
    callback = EvaluationReport(bootstrap=50)
    trainer = make_trainer(tmp_path, logger, callback)
    with caplog.at_level("INFO"):
        trainer.test(TinyModule(), datamodule=TinyDataModule(make_samples(tmp_path)))
    out = tmp_path / "logs" / "run" / "version_0"
    assert callback.paths == (out / "report.json", out / "report.md")
    assert str(out / "report.md") in caplog.text
    report = json.loads((out / "report.json").read_text())
    assert report["meta"]["n_images"] == 8 and report["meta"]["mask_threshold"] == 0.5
    assert (out / "confusion_matrix.png").exists() and (out / "per_image.csv").exists()

    events = EventAccumulator(str(out))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"report/accuracy", "report/dice_tumour_pooled", "report/gated/false_mask_rate"} <= tags
    logged = events.Scalars("report/accuracy")[-1].value
    assert logged == pytest.approx(report["headline"]["accuracy"], abs=1e-6)


def test_callback_without_logger_writes_to_root_dir(tmp_path):
    callback = EvaluationReport(bootstrap=0, mask_gate=False)
    trainer = make_trainer(tmp_path, False, callback)
    trainer.test(TinyModule(), datamodule=TinyDataModule(make_samples(tmp_path)))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gated"] is None
    assert "with the mask gate" not in (tmp_path / "report.md").read_text()


def test_callback_tta_option_reaches_the_report(tmp_path):
    callback = EvaluationReport(bootstrap=0, mask_gate=False, tta="flip")
    trainer = make_trainer(tmp_path, False, callback)
    trainer.test(TinyModule(), datamodule=TinyDataModule(make_samples(tmp_path)))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["tta"] == "flip"
    assert "| test-time augmentation | flip |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="tta must be one of"):
        EvaluationReport(tta="rot")
