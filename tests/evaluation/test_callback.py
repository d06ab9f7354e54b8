"""The EvaluationReport callback inside trainer.test: files in the log folder, scalars in TensorBoard."""

import json

import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from brain_mtl.callbacks import EvaluationReport
from tests.evaluation.eval_fakes import FakeDataModule, FakeModule, make_samples, make_trainer


def test_callback_writes_report_and_logs_scalars(tmp_path, caplog):
    logger = TensorBoardLogger(tmp_path / "logs", name="run")
    callback = EvaluationReport(bootstrap=50)
    trainer = make_trainer(tmp_path, logger, callback)
    with caplog.at_level("INFO"):
        trainer.test(FakeModule(), datamodule=FakeDataModule(make_samples(tmp_path)))
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
    trainer.test(FakeModule(), datamodule=FakeDataModule(make_samples(tmp_path)))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["gated"] is None
    assert "with the mask gate" not in (tmp_path / "report.md").read_text()


def test_the_module_tta_setting_reaches_the_report(tmp_path):
    callback = EvaluationReport(bootstrap=0, mask_gate=False)
    trainer = make_trainer(tmp_path, False, callback)
    trainer.test(FakeModule(tta="flip"), datamodule=FakeDataModule(make_samples(tmp_path)))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["meta"]["tta"] == "flip"
    assert "| test-time augmentation | flip |" in (tmp_path / "report.md").read_text()


def test_a_test_step_without_per_image_statistics_is_a_clear_error(tmp_path):
    class Plain(FakeModule):
        def test_step(self, batch, batch_idx):
            return None

    trainer = make_trainer(tmp_path, False, EvaluationReport(bootstrap=0))
    with pytest.raises(RuntimeError, match="per-image 'stats'"):
        trainer.test(Plain(), datamodule=FakeDataModule(make_samples(tmp_path)))
