"""convert figshare: MATLAB v7.3 files (written here with h5py, as the Figshare set stores them) -> BRISC layout."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from brain_mtl.commands.main import main
from brain_mtl.data.index import index_dataset
from brain_mtl.data.split import carve_validation, fold_groups
from tests.fixtures import write_checkpoint
from tests.task.conftest import tiny_config

h5py = pytest.importorskip("h5py")

# (file number, label: 1 meningioma, 2 glioma, 3 pituitary, patient id)
SLICES = [(n, 1 + n % 3, f"P{n // 4:03d}") for n in range(1, 25)]


def write_figshare_mat(path, image, label, patient, mask):
    """One Figshare file: a MATLAB v7.3 (HDF5) ``cjdata`` struct, arrays transposed as MATLAB writes them."""
    with h5py.File(path, "w") as handle:
        data = handle.create_group("cjdata")
        data["image"] = image.T.astype(np.int16)
        data["label"] = np.array([[float(label)]])
        data["PID"] = np.array([[ord(c)] for c in patient], dtype=np.uint16)
        data["tumorMask"] = mask.T.astype(np.uint8)
        data["tumorBorder"] = np.zeros((1, 4))


@pytest.fixture
def figshare(tmp_path):
    folder = tmp_path / "figshare"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n, label, patient in SLICES:
        image = rng.integers(0, 3000, (48, 40)).astype(np.int16)
        image[:, :8] = 0  # not square and not symmetric: a transposition would show
        mask = np.zeros((48, 40), dtype=bool)
        mask[10 + n % 5 : 20 + n % 5, 12:22] = True
        image[mask] += 2000
        write_figshare_mat(folder / f"{n}.mat", image, label, patient, mask)
    (folder / "25.mat").write_bytes(b"not an HDF5 file")
    return folder


def test_convert_figshare_then_check_data_then_a_split_with_no_patient_on_both_sides(figshare, tmp_path, capsys):
    out = tmp_path / "brisc"
    assert main(["convert", "figshare", "--input", str(figshare), "--output", str(out)]) == 1  # one broken file
    printed = capsys.readouterr()
    assert "25.mat" in printed.err and f"wrote {len(SLICES)} images" in printed.out
    marker = json.loads((out / "convert.json").read_text())
    patients = {patient for _, _, patient in SLICES}
    assert marker["converted"] == len(SLICES) and marker["patients"] == len(patients) and len(marker["failed"]) == 1

    # The slice is the MATLAB array (rows x columns), not its transpose, and its mask is aligned with it.
    image = cv2.imread(str(out / "classification_task/train/meningioma/figshare_3.png"), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(out / "segmentation_task/train/masks/figshare_3.png"), cv2.IMREAD_GRAYSCALE)
    assert image.shape == mask.shape == (48, 40) and image[:, :8].max() == 0
    assert image[mask > 0].mean() > image[mask == 0].mean() + 50

    assert main(["check-data", "--root", str(out)]) == 0
    index = index_dataset(out)
    assert not [p for p in index.problems if p.severity == "error"]
    assert {r.patient for r in index.records} == patients
    carved = carve_validation(index, 0.3, seed=1)
    val = {r.patient for r in carved.records if r.split == "val"}
    train = {r.patient for r in carved.records if r.split == "train"}
    assert val and train and not val & train  # each patient on one side
    folds = fold_groups([r for r in index.records if r.split == "train"], 3, seed=0)
    patients_per_fold = [{r.patient for group in fold for r in group} for fold in folds]
    assert sum(len(p) for p in patients_per_fold) == len(set().union(*patients_per_fold))

    # Run again: the finished conversion is recognised; a folder with other files is refused.
    assert main(["convert", "figshare", "--input", str(figshare), "--output", str(out)]) == 0
    assert "already holds the finished conversion" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    assert main(["convert", "figshare", "--input", str(figshare), "--output", str(other)]) == 2
    assert "refusing to write into it" in capsys.readouterr().err and (other / "mine.txt").read_text() == "keep me"


def test_a_manifest_that_gives_one_image_two_patients_is_an_error(tiny_datasets, tmp_path):
    root = shutil.copytree(tiny_datasets(48, 12, seed=0), tmp_path / "copy")
    first = next(iter(sorted((root / "classification_task/train").rglob("*.jpg"))))
    (root / "manifest.csv").write_text(f"image,patient_id\n{first.name},A\n{first.name},B\n")
    index = index_dataset(root)
    assert [p.kind for p in index.problems if p.severity == "error"] == ["manifest_conflict"]


def _test_on(folder, trained_on, tmp_path):
    """``test`` on ``folder`` a tiny network whose checkpoint records ``trained_on``: (report, its text, config)."""
    ckpt = write_checkpoint(
        tmp_path / "m.ckpt", datamodule_hparams={"root": str(trained_on), "image_size": 32, "keep_aspect": False}
    )
    run = tmp_path / "run"
    config = tiny_config(folder, run, overrides={"data.image_size": 32})
    assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt)]) == 0
    return json.loads(next(run.rglob("report.json")).read_text()), next(run.rglob("report.md")).read_text(), config


def test_external_validation_on_a_converted_test_only_folder(figshare, tmp_path, tiny_datasets):
    trained_on = tiny_datasets(48, 12, seed=0)
    out = tmp_path / "external"
    assert main(["convert", "figshare", "--input", str(figshare), "--output", str(out), "--split", "test"]) == 1
    assert not (out / "classification_task" / "train").exists()  # a folder to test on only
    report, text, config = _test_on(out, trained_on, tmp_path)
    meta = report["meta"]
    assert meta["external"] is True and meta["trained_on"] == str(trained_on.absolute())
    assert meta["n_images_per_class"]["no_tumor"] == 0 and meta["n_tumour_images_with_mask"] == len(SLICES)
    assert "**External validation.**" in text and "Classes absent from it: no_tumor" in text
    # fit still needs a train split, and says so.
    assert main(["fit", "--config", str(config)]) == 1


def test_convert_folders_then_test_on_classification_only_data(tmp_path, tiny_datasets, capsys):
    trained_on = tiny_datasets(48, 12, seed=0)
    kaggle = tmp_path / "kaggle"
    rng = np.random.default_rng(0)
    for split, per_class in (("Training", 2), ("Testing", 3)):
        for folder in ("glioma", "meningioma", "notumor"):  # Kaggle's spelling of no_tumor; no pituitary here
            (kaggle / split / folder).mkdir(parents=True)
            for k in range(per_class):
                cv2.imwrite(str(kaggle / split / folder / f"{folder}_{k}.jpg"), rng.integers(0, 255, (40, 36)))
    (kaggle / "Testing" / "glioma" / "readme.txt").write_text("not an image")
    out = tmp_path / "external"
    args = ["convert", "folders", "--input", str(kaggle), "--output", str(out)]
    assert main([*args[:3], str(tmp_path / "nowhere"), *args[4:]]) == 2  # no split folder there
    (kaggle / "Testing" / "weird").mkdir()
    assert main(args) == 2 and "unknown class folder 'weird'" in capsys.readouterr().err
    (kaggle / "Testing" / "weird").rmdir()
    assert main(args) == 1  # the .txt is named, the images are copied
    assert sorted(p.name for p in (out / "classification_task" / "test").iterdir()) == [
        "glioma",
        "meningioma",
        "no_tumor",
    ]
    assert main(args) == 0  # the finished conversion is recognised

    report, text, config = _test_on(out, trained_on, tmp_path)
    assert report["meta"]["external"] is True and report["meta"]["n_tumour_images_with_mask"] == 0
    assert report["classification"]["n_images"] == 9
    assert "It has no tumour masks: the segmentation figures are not measured" in text
    assert "Classes absent from it: pituitary" in text
    printed = capsys.readouterr()
    assert "test/seg/dice" not in printed.out + printed.err  # not logged as 0 when nothing could be measured
    assert "test/cls/acc" in printed.out + printed.err
    assert main(["fit", "--config", str(config)]) == 1  # training needs the masks
