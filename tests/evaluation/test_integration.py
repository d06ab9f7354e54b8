"""The report on the real datamodule and task module, over a tiny synthetic BRISC-layout folder."""

import shutil

import numpy as np
import pytest

from brain_mtl.callbacks import evaluate
from brain_mtl.classes import NO_TUMOR
from brain_mtl.data.datamodule import BrainTumorDataModule
from brain_mtl.evaluation import write_report
from brain_mtl.task.module import BrainTumorModule


def test_report_on_synthetic_folder_lists_planted_leak(tmp_path, tiny_datasets):
    root = tmp_path / "brisc"
    shutil.copytree(tiny_datasets(12, 8, seed=1, duplicates=False), root)  # a copy: a leak is planted in it
    # Plant one leak: a training no-tumour image copied byte-for-byte into the test split under a test name.
    source = sorted((root / "classification_task" / "train" / "no_tumor").iterdir())[0]
    view = source.stem.split("_")[4]
    leaked = root / "classification_task" / "test" / "no_tumor" / f"brisc2025_test_00099_no_{view}_t1{source.suffix}"
    shutil.copyfile(source, leaked)

    datamodule = BrainTumorDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, augment="none")
    module = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8)
    report = evaluate(module, datamodule, bootstrap=20, check_duplicates=True)
    _, md_path = write_report(report, tmp_path / "report")
    report = report.to_dict()

    index = datamodule.index
    test_cls = index.classification("test")
    meta = report["meta"]
    assert meta["n_images"] == len(test_cls) == 9
    assert meta["n_no_tumour_images"] == sum(r.label == NO_TUMOR for r in test_cls)
    assert meta["n_tumour_images_with_mask"] == len(index.segmentation("test"))
    assert meta["evaluated_grid_sizes"] == ["32x32"]
    assert meta["data_root"] == str(root.absolute()) and meta["data_synthetic"] is True
    assert report["leakage"]["checked"] and report["leakage"]["n_groups"] == 1
    group = report["leakage"]["groups"][0]
    assert group["evaluated"] == [str(leaked)] and group["train"] == [str(source)]
    # Every tumour image of the synthetic test split has a mask, so all-image Dice covers every image.
    assert report["ungated"]["all_images"]["n_images"] == 9
    probs = np.array([[v for k, v in row.items() if k.startswith("p_")] for row in report["per_image"]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    text = md_path.read_text()
    assert str(leaked.name) in text
    assert f"> **Synthetic data.** These figures are on the synthetic dataset in `{root.absolute()}`" in text


def test_report_on_a_folder_not_written_by_the_generator_is_not_synthetic(tmp_path, tiny_datasets):
    root = tmp_path / "scans"
    shutil.copytree(tiny_datasets(12, 8, seed=1, duplicates=False), root)  # a copy: its markers are removed
    (root / "synthetic.json").unlink()  # what is left looks like any BRISC-layout folder
    (root / "manifest.csv").unlink()
    datamodule = BrainTumorDataModule(root=str(root), image_size=32, batch_size=4, num_workers=0, augment="none")
    module = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8)
    meta = evaluate(module, datamodule, bootstrap=0).meta.extra
    assert meta["data_root"] == str(root.absolute()) and meta["data_synthetic"] is False


def test_cli_test_report_agrees_with_the_logged_test_metrics_on_the_same_checkpoint(tmp_path, caplog, tiny_datasets):
    """One metrics path: report.json and TensorBoard's test/... scalars come from the same test steps."""
    import json

    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from brain_mtl.commands.main import main

    root = tiny_datasets(12, 8, seed=2, duplicates=False)
    config = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "limit_train_batches": 3,
            "default_root_dir": str(tmp_path / "run"),
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "run"), "name": "tb"},
            },
            "callbacks": [
                {
                    "class_path": "brain_mtl.callbacks.RunCheckpoint",
                    "init_args": {"monitor": "val/score", "mode": "max"},
                },
                {"class_path": "brain_mtl.callbacks.EvaluationReport", "init_args": {"bootstrap": 20}},
            ],
        },
        "model": {
            "base_channels": 4,
            "depth": 2,
            "classifier_hidden": 8,
            "mask_threshold": 0.4,
            "false_mask_min_area": 3,
            "lr": 0.01,
        },
        "data": {"root": str(root), "image_size": 32, "batch_size": 4, "num_workers": 0, "val_fraction": 0.25},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(path)]) == 0
    checkpoint = next((tmp_path / "run").rglob("last.ckpt"))
    with caplog.at_level("INFO"):
        assert main(["test", "--config", str(path), "--ckpt_path", str(checkpoint), "--model.tta", "d4"]) == 0
    out = tmp_path / "run" / "tb" / "version_1"
    assert f"Evaluation report written to {out / 'report.md'}" in caplog.text

    def refuse(constant):
        raise ValueError(f"report.json is not strict JSON: {constant}")

    report = json.loads((out / "report.json").read_text(), parse_constant=refuse)
    assert report["meta"]["n_images"] == 8 and report["meta"]["mask_threshold"] == 0.4
    assert report["meta"]["tta"] == "d4" and report["meta"]["ckpt_path"] == str(checkpoint)
    assert report["meta"]["data_root"] == str(root.absolute()) and report["meta"]["data_synthetic"] is True
    assert (out / "report.md").read_text().startswith("# Evaluation report")

    events = EventAccumulator(str(out))
    events.Reload()
    logged = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    pairs = {
        "test/cls/acc": report["classification"]["accuracy"],
        "test/cls/precision": report["classification"]["macro_precision"],
        "test/cls/recall": report["classification"]["macro_recall"],
        "test/cls/f1": report["classification"]["macro_f1"],
        "test/seg/dice": report["ungated"]["tumour_segmentation"]["overall"]["dice_pooled"],
        "test/seg/iou": report["ungated"]["tumour_segmentation"]["overall"]["iou_pooled"],
        "test/seg/pixel_acc": report["ungated"]["tumour_segmentation"]["overall"]["pixel_accuracy_pooled"],
        "test/seg/false_mask_rate": report["ungated"]["false_masks"]["rate"],
    }
    for tag, value in pairs.items():
        assert logged[tag] == pytest.approx(value, abs=1e-5), tag
