"""LightningCLI's ``predict`` with the PredictionWriter: the files of ``predict-images``, the same numbers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from brain_mtl.cli import main
from brain_mtl.data.io import read_image
from brain_mtl.inference import PredictionWriter, Preprocessing

from .conftest import QUICKSTART
from .helpers import BrightnessSegmenter, lightning_predict_args, prediction_rows


def test_lightning_predict_writes_what_predict_images_writes(tmp_path, trained):
    out_cli = tmp_path / "lightning"
    args = lightning_predict_args(QUICKSTART, trained.ckpt, trained.data_root, out_cli, tmp_path / "run")
    status = main([*args, "--model.base_channels", "8"])
    assert status == 0
    test_images = sorted((trained.data_root / "classification_task" / "test").rglob("*.jpg"))
    lightning_rows = prediction_rows(out_cli / "predictions.csv")
    assert sorted(lightning_rows) == sorted(p.name for p in test_images)
    for image_path in test_images:
        row = lightning_rows[image_path.name]
        mask = cv2.imread(str(out_cli / row["mask_file"]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == read_image(image_path).shape[:2]
        assert (out_cli / f"{row['stem']}_overlay.png").is_file()
    assert json.loads((out_cli / "predictions.json").read_text())["failed"] == []

    # The same images through predict-images: the same probabilities and masks.
    out_tool = tmp_path / "tool"
    args = ["predict-images", "--ckpt_path", str(trained.ckpt), "--output", str(out_tool), "--no_overlay", "--input"]
    assert main([*args, *map(str, test_images)]) == 0
    tool_rows = prediction_rows(out_tool / "predictions.csv")
    for name, row in lightning_rows.items():
        for key in ("p_glioma", "p_meningioma", "p_pituitary", "p_no_tumor"):
            assert float(row[key]) == pytest.approx(float(tool_rows[name][key]), abs=1e-4)
        assert abs(int(row["mask_area_px"]) - int(tool_rows[name]["mask_area_px"])) <= 2


def test_writer_undoes_the_letterbox_of_predict_step_outputs(tmp_path):
    # A non-square scan with a bright box near one end; the datamodule letterboxes it to 64x64.
    height, width = 50, 160
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[10:30, 120:150] = 255
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image)

    model = BrightnessSegmenter()
    x = Preprocessing(64, keep_aspect=True)(read_image(path))[None]
    with torch.no_grad():
        out = model(x)
    prediction = {
        "mask_probs": torch.sigmoid(out.mask_logits),
        "class_probs": torch.softmax(out.class_logits, 1),
        "path": [str(path)],
        "orig_size": torch.tensor([[height, width]]),
    }
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(image_size=64, keep_aspect=True, hparams={}), world_size=1, global_rank=0
    )
    module = SimpleNamespace(hparams={"mask_threshold": 0.5, "num_classes": 4})
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    writer.on_predict_start(trainer, module)
    writer.write_on_batch_end(trainer, module, prediction, None, None, 0)
    writer.on_predict_end(trainer, module)

    mask = cv2.imread(str(tmp_path / "out" / "wide_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    truth = np.zeros((height, width), dtype=bool)
    truth[10:30, 120:150] = True
    assert mask.shape == (height, width)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    row = prediction_rows(tmp_path / "out" / "predictions.csv")["wide.png"]
    assert row["class"] == "pituitary"  # BrightnessSegmenter's fixed logits favour class 2


def test_writer_warns_when_the_datamodule_resizes_differently_from_training(tmp_path, tiny_ckpt):
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(image_size=64, keep_aspect=False, hparams={}),
        world_size=1,
        global_rank=0,
        ckpt_path=str(tiny_ckpt),  # trained at 32 px
    )
    module = SimpleNamespace(hparams={"mask_threshold": 0.5, "num_classes": 4})
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    with pytest.warns(UserWarning, match="--data.image_size 32"):
        writer.on_predict_start(trainer, module)
    writer.on_predict_end(trainer, module)


def test_writer_lists_non_finite_predictions_as_failed_and_warns(tmp_path):
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), np.zeros((20, 30), dtype=np.uint8))
    prediction = {
        "mask_probs": torch.full((2, 1, 32, 32), 0.2),
        "class_probs": torch.tensor([[float("nan")] * 4, [0.1, 0.2, 0.3, 0.4]]),
        "path": [str(path), str(path)],
        "orig_size": torch.tensor([[20, 30], [20, 30]]),
    }
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(image_size=32, keep_aspect=False, hparams={}), world_size=1, global_rank=0
    )
    module = SimpleNamespace(hparams={"mask_threshold": 0.5, "num_classes": 4})
    writer = PredictionWriter(output_dir=str(tmp_path / "out"))
    writer.on_predict_start(trainer, module)
    writer.write_on_batch_end(trainer, module, prediction, None, None, 0)
    with pytest.warns(UserWarning, match="1 of 2 images got no prediction"):
        writer.on_predict_end(trainer, module)

    text = (tmp_path / "out" / "predictions.json").read_text()
    report = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    assert len(report["predictions"]) == 1 and len(report["failed"]) == 1
    assert "not finite" in report["failed"][0]["error"]
    assert "nan" not in (tmp_path / "out" / "predictions.csv").read_text().lower()
