"""The report built from the test loop's per-image statistics, end to end on a network with a known output."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from brain_mtl.callbacks import evaluate
from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.data import BrainTumorDataModule, DatasetIndex, ImageRecord
from brain_mtl.evaluation import ImageRecords, build_report, leaked_duplicates, write_report
from brain_mtl.evaluation.leakage import datamodule_duplicates, index_duplicates
from brain_mtl.evaluation.metrics import hd95
from tests.evaluation.eval_fakes import CASES, GL, SIZE, FakeDataModule, FakeModule, FakeNet, make_samples, run_test


def test_report_from_the_test_loop_matches_direct_counts(tmp_path):
    report = run_test(make_samples(tmp_path), tmp_path, bootstrap=200).report.to_dict()
    meta = report["meta"]
    assert (meta["n_images"], meta["n_images_with_mask"], meta["n_tumour_images_with_mask"]) == (8, 7, 4)
    assert meta["n_no_tumour_images"] == 3 and meta["n_tumour_images_without_mask"] == 1

    # Tumour images: pooled Dice from counts summed over images 0, 1, 2 and 7, counted directly.
    tp = 36 + 36 + 0 + 25
    fp = (64 - 36) + 0 + 0 + 0
    fn = (64 - 36) + 0 + 16 + 0
    seg = report["ungated"]["tumour_segmentation"]["overall"]
    assert seg["n_images"] == 4
    assert seg["dice_pooled"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert seg["iou_pooled"] == pytest.approx(tp / (tp + fp + fn))
    per_image = [2 * 36 / 128, 1.0, 0.0, 1.0]
    assert seg["dice_per_image"]["mean"] == pytest.approx(np.mean(per_image))
    assert seg["dice_per_image"]["median"] == pytest.approx(np.median(per_image))
    assert seg["dice_per_image"]["sd"] == pytest.approx(np.std(per_image, ddof=1))
    assert seg["hd95_px"]["n"] == 3 and seg["hd95_px"]["n_undefined_one_empty"] == 1
    assert seg["hd95_px"]["median"] == pytest.approx(np.median([hd95(CASES[0][2], CASES[0][1]), 0.0, 0.0]))
    by_class = report["ungated"]["tumour_segmentation"]["by_class"]
    assert set(by_class) == {"glioma", "meningioma", "pituitary"}
    assert by_class["meningioma"]["dice_pooled"] == 1.0 and by_class["pituitary"]["dice_pooled"] == 0.0
    assert by_class["meningioma"]["n_images"] == 2
    assert by_class["glioma"]["n_images"] == 1  # the glioma without a mask is left out
    sizes = report["ungated"]["tumour_segmentation"]["by_size"]
    # Areas 64, 36, 16, 25 px: terciles at 25 and 36 px -> small {16, 25}, medium {36}, large {64}.
    assert sizes["edges_share_of_image"] == pytest.approx([25 / SIZE**2, 36 / SIZE**2])
    assert [sizes[k]["n_images"] for k in ("small", "medium", "large")] == [2, 1, 1]
    assert sizes["small"]["dice_pooled"] == pytest.approx(2 * 25 / (2 * 25 + 16))  # missed 16 px + perfect 25 px

    # All images with a mask: tumour Dice values, then healthy ones (speck -> 0, empty -> 1, speck -> 0).
    all_dice = [*per_image, 0.0, 1.0, 0.0]
    assert report["ungated"]["all_images"]["dice_mean"] == pytest.approx(np.mean(all_dice))
    assert report["ungated"]["all_images"]["n_images"] == 7
    # False masks: the 25 px mask counts, the 4 px speck is under the 10 px threshold.
    fm = report["ungated"]["false_masks"]
    assert (fm["n_flagged"], fm["n_images"]) == (1, 3)

    # The gate empties images 3, 5 and 7 (class head says no tumour): the healthy ones become perfect, no false
    # mask is left, and the meningioma of image 7 is lost (Dice 1 -> 0, HD95 undefined).
    gated = report["gated"]
    gated_per_image = [2 * 36 / 128, 1.0, 0.0, 0.0]
    assert gated["all_images"]["dice_mean"] == pytest.approx(np.mean([*gated_per_image, 1.0, 1.0, 1.0]))
    assert gated["false_masks"]["n_flagged"] == 0
    assert gated["n_masks_emptied_by_gate"] == 3
    g_seg = gated["tumour_segmentation"]["overall"]
    assert g_seg["dice_pooled"] == pytest.approx(2 * (tp - 25) / (2 * (tp - 25) + fp + fn + 25))
    assert g_seg["dice_per_image"]["mean"] == pytest.approx(np.mean(gated_per_image))
    assert g_seg["hd95_px"]["n_undefined_one_empty"] == 2
    assert gated["tumour_segmentation"]["by_class"]["meningioma"]["dice_per_image"]["mean"] == 0.5

    cls = report["classification"]
    assert cls["accuracy"] == pytest.approx(6 / 8)
    assert cls["confusion_matrix"]["counts"][NO_TUMOR][GL] == 1
    head = report["headline"]
    assert head["accuracy"] == pytest.approx(6 / 8)
    assert head["false_mask_rate"] == pytest.approx(1 / 3) and head["gated/false_mask_rate"] == 0.0
    for item in report["ungated"]["headline"].values():
        low, high = item["ci95"]
        if math.isfinite(item["value"]):
            assert low <= item["value"] + 1e-12 and item["value"] <= high + 1e-12
    assert report["ungated"]["headline"]["dice_tumour_pooled"]["n_images"] == 4
    assert report["ungated"]["headline"]["dice_all_images"]["n_images"] == 7
    assert report["leakage"]["checked"] is False


def test_test_loop_in_batches_equals_records_from_full_masks(tmp_path):
    samples = make_samples(tmp_path)
    via_loop = run_test(samples, tmp_path, datamodule=FakeDataModule(samples, batch_size=2), bootstrap=100, seed=3)
    probs = np.stack([np.eye(len(CLASS_NAMES))[c[3]] for c in CASES])  # not the model's softmax: compare masks only
    records = ImageRecords.from_masks(
        [s["path"] for s in samples],
        [c[0] for c in CASES],
        probs,
        [c[2] for c in CASES],
        [c[1] for c in CASES],
        [c[4] for c in CASES],
    )
    direct = build_report(records, bootstrap=100, seed=3)
    for section in ("ungated", "gated"):
        for key, item in getattr(direct, section).headline.items():
            other = getattr(via_loop.report, section).headline[key]
            assert other.value == pytest.approx(item.value, nan_ok=True), key
            assert other.ci95 == pytest.approx(item.ci95, nan_ok=True), key


def test_mask_threshold_and_false_mask_area_come_from_the_module(tmp_path):
    samples = make_samples(tmp_path)
    samples[1]["image"][0] *= 0.55  # mask probability sigmoid(20 * 0.05) = 0.73 inside the square
    report = run_test(samples, tmp_path, FakeModule(mask_threshold=0.8)).report
    assert report.meta.mask_threshold == 0.8 and report.per_image[1]["pred_area_px"] == 0
    report = run_test(samples, tmp_path, FakeModule()).report
    assert report.meta.mask_threshold == 0.5 and report.per_image[1]["pred_area_px"] == 36
    # Healthy images: a 25 px mask, an empty one, a 4 px speck.
    assert report.ungated.false_masks.n_flagged == 1 and report.meta.false_mask_min_area_px == 10
    report = run_test(samples, tmp_path, FakeModule(false_mask_min_area=3)).report
    assert report.ungated.false_masks.n_flagged == 2 and report.meta.false_mask_min_area_px == 3


def test_masks_of_another_size_than_the_prediction_are_refused(tmp_path):
    samples = make_samples(tmp_path)
    for s in samples:
        s["mask"] = s["mask"][:, :16, :16]
    with pytest.raises(ValueError, match="ground-truth masks are"):
        run_test(samples, tmp_path)


def test_gate_min_area_empties_small_masks_with_the_postprocess_gate(tmp_path):
    report = run_test(make_samples(tmp_path), tmp_path, gate_min_area=30).report
    # Predicted areas 64, 36, 0, 25, 0, 4, 81, 25 px; the class head vetoes images 3, 5 and 7. At 30 px the
    # masks it does not veto are all large enough; at 40 px the 36 px mask of image 1 goes too.
    emptied = [row["gate_empties_mask"] for row in report.per_image]
    assert emptied == [False, False, False, True, False, True, False, True]
    report = run_test(make_samples(tmp_path), tmp_path, gate_min_area=40).report
    assert [row["gate_empties_mask"] for row in report.per_image][:2] == [False, True]  # 64 px stays, 36 px goes


def test_write_report_files(tmp_path):
    samples = make_samples(tmp_path)
    train = tmp_path / "train"
    train.mkdir()
    (train / "copy_of_3.png").write_bytes(b"image 3")  # same bytes as test image 3
    (train / "other.png").write_bytes(b"image X")  # same size, different content
    (train / "long.png").write_bytes(b"something else entirely")
    dm = FakeDataModule(samples, train_paths=sorted(str(p) for p in train.iterdir()))
    report = run_test(samples, tmp_path, datamodule=dm, bootstrap=50, check_duplicates=True).report
    json_path, md_path = write_report(report, tmp_path / "out")
    report = report.to_dict()
    assert report["leakage"]["checked"] and report["leakage"]["n_groups"] == 1
    assert report["leakage"]["groups"][0] == {
        "train": [str(train / "copy_of_3.png")],
        "evaluated": [samples[3]["path"]],
    }

    loaded = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert loaded["headline"]["accuracy"] == pytest.approx(6 / 8)
    # NaN (e.g. the undefined HD95 maximum of the pituitary image) is written as null
    assert loaded["ungated"]["tumour_segmentation"]["by_class"]["pituitary"]["hd95_px"]["mean"] is None
    text = md_path.read_text()
    for needle in (
        "## Headline numbers",
        "## Classification",
        "## Segmentation without the mask gate",
        "## Segmentation with the mask gate",
        "Possible leakage",
        "copy_of_3.png",
        "## Conventions",
        "count as 1",
    ):
        assert needle in text, needle
    png = cv2.imread(str(tmp_path / "out" / "confusion_matrix.png"))
    assert png is not None and png.shape[0] > 100
    csv_lines = (tmp_path / "out" / "per_image.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(CASES)


def test_report_says_where_the_data_is_and_whether_it_is_synthetic(tmp_path):
    samples = make_samples(tmp_path)
    unknown = run_test(samples, tmp_path, datamodule=False).report.to_dict()
    assert unknown["meta"]["data_root"] is None and unknown["meta"]["data_synthetic"] is None

    dm = FakeDataModule(samples, dataset_root=tmp_path / "real", is_synthetic=False)
    real = run_test(samples, tmp_path, datamodule=dm).report
    assert real.meta.extra["data_root"] == str((tmp_path / "real").absolute())
    assert real.meta.extra["data_synthetic"] is False
    json_path, md_path = write_report(real, tmp_path / "real_out")
    assert json.loads(json_path.read_text())["meta"]["data_synthetic"] is False
    text = md_path.read_text()
    assert f"| data root | {tmp_path / 'real'} |" in text and "| synthetic data | no |" in text
    assert "Synthetic data." not in text

    dm.is_synthetic = True
    _, md_path = write_report(run_test(samples, tmp_path, datamodule=dm).report, tmp_path / "syn_out")
    assert "> **Synthetic data.**" in md_path.read_text()


def test_cross_split_duplicates_groups(tmp_path):
    files = {"tr/a": b"same", "tr/b": b"same", "tr/c": b"diff", "te/x": b"same", "te/y": b"uniq", "te/z": b"diff"}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    groups = leaked_duplicates(
        [tmp_path / n for n in files if n.startswith("tr")], [tmp_path / n for n in files if n.startswith("te")]
    )
    assert groups == [
        {"train": [str(tmp_path / "tr/a"), str(tmp_path / "tr/b")], "evaluated": [str(tmp_path / "te/x")]},
        {"train": [str(tmp_path / "tr/c")], "evaluated": [str(tmp_path / "te/z")]},
    ]


def test_leakage_from_a_dataset_index():
    def rec(name, split, digest):
        return ImageRecord(path=Path(name), label=0, split=split, task="classification", digest=digest)

    index = DatasetIndex(
        root=Path("."),
        records=[
            rec("tr1", "train", "A"),
            rec("va1", "val", "A"),
            rec("te1", "test", "A"),
            rec("tr2", "train", "B"),
            rec("tr3", "train", "B"),  # duplicates inside train only: not leakage
            rec("va2", "val", "C"),
            rec("te2", "test", "C"),
            rec("te3", "test", "D"),
        ],
    )
    assert index_duplicates(index, "test") == [
        {"train": ["tr1", "va1"], "evaluated": ["te1"]},
        {"train": ["va2"], "evaluated": ["te2"]},
    ]
    # Evaluating val: val images are the evaluated ones, only train counts as training.
    assert index_duplicates(index, "val") == [{"train": ["tr1"], "evaluated": ["va1"]}]

    dm = BrainTumorDataModule(root=".", num_workers=0)
    dm.index = index  # as after setup()
    groups, note = datamodule_duplicates(dm, "test", [])
    assert len(groups) == 2 and "content hash" in note
    groups, note = datamodule_duplicates(object(), "test", [])
    assert groups is None and "not a BrainTumorDataModule" in note


def test_evaluate_runs_the_real_task_module(tmp_path):
    from brain_mtl.task.module import BrainTumorModule

    module = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8, mask_threshold=0.3)
    report = evaluate(module, FakeDataModule(make_samples(tmp_path)), bootstrap=20)
    assert report.meta.n_images == len(CASES) and report.meta.mask_threshold == 0.3
    probs = np.array([[row[f"p_{name}"] for name in CLASS_NAMES] for row in report.per_image])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


class _RampNet(FakeNet):
    """FakeNet plus a left-to-right ramp in the mask logits: its masks change when the image is turned."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        out = super().forward(x)
        ramp = torch.linspace(-15.0, 15.0, x.shape[-1])
        return out._replace(mask_logits=out.mask_logits + ramp)


class _RampModule(FakeModule):
    def configure_models(self) -> None:
        self.model = _RampNet()


def test_report_with_tta_averages_the_views_and_says_so(tmp_path):
    from brain_mtl.models.tta import tta_probs

    samples = make_samples(tmp_path)
    # FakeNet is equivariant (its mask is pixel-wise, its class a global mean): TTA changes no figure.
    plain = run_test(samples, tmp_path, FakeModule()).report
    d4 = run_test(samples, tmp_path, FakeModule(tta="d4")).report
    assert plain.meta.tta == "none" and d4.meta.tta == "d4"
    for key, value in plain.headline.items():
        assert d4.headline[key] == pytest.approx(value, nan_ok=True), key
    assert "no test-time augmentation" in plain.conventions["forward"]
    assert "'d4'" in d4.conventions["forward"] and "averaged over the views" in d4.conventions["forward"]

    # A network that is not equivariant: 8 forward passes per batch, masks from the averaged probabilities.
    module = _RampModule(tta="d4")
    records = run_test(samples, tmp_path, module).records
    assert len(module.model.calls) == 8 * math.ceil(len(samples) / 3)
    images = torch.stack([s["image"] for s in samples])
    mask_probs, class_probs = tta_probs(_RampNet(), images, "d4")
    np.testing.assert_array_equal(records.pred_area, (mask_probs > 0.5).sum(dim=(1, 2, 3)).numpy())
    np.testing.assert_allclose(records.probs, class_probs.numpy(), atol=1e-5)
    untransformed = run_test(samples, tmp_path, _RampModule()).records
    assert not np.array_equal(untransformed.pred_area, records.pred_area)

    _, md_path = write_report(d4, tmp_path / "report")
    assert "| test-time augmentation | d4 |" in md_path.read_text()
    assert json.loads((tmp_path / "report" / "report.json").read_text())["meta"]["tta"] == "d4"
    with pytest.raises(ValueError, match="tta must be"):
        FakeModule(tta="d8")
