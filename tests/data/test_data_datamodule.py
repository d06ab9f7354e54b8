from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.utilities import CombinedLoader

from brain_mtl.classes import NO_TUMOR
from brain_mtl.data import BrainTumorDataModule, DatasetError
from brain_mtl.data.datamodule import default_num_workers
from brain_mtl.data.duplicates import file_digest
from brain_mtl.data.synthetic import is_synthetic_dataset
from tests.data.data_helpers import N_TEST, N_TRAIN, TreeBuilder

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


def make_dm(root: Path | None, **kwargs) -> BrainTumorDataModule:
    options = {"image_size": 64, "batch_size": 4, "num_workers": 0, "seed": 0}
    options.update(kwargs)
    return BrainTumorDataModule(root=None if root is None else str(root), **options)


def all_batches(loader) -> list[dict]:
    return list(loader)


def test_train_batches_have_the_contracted_structure(synthetic_root: Path) -> None:
    dm = make_dm(synthetic_root)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    batch, _, _ = next(iter(loader))
    seg, cls = batch["seg"], batch["cls"]
    assert seg["image"].shape == (4, 3, 64, 64) and seg["image"].dtype == torch.float32
    assert seg["mask"].shape == (4, 1, 64, 64) and seg["mask"].dtype == torch.float32
    assert set(seg["mask"].unique().tolist()) <= {0.0, 1.0}
    assert seg["label"].dtype == torch.long and seg["label"].shape == (4,)
    assert isinstance(seg["path"], list) and len(seg["path"]) == 4
    assert seg["orig_size"].dtype == torch.long and seg["orig_size"].shape == (4, 2)
    assert set(cls) == {"image", "label", "path", "orig_size"}
    # Normalised with ImageNet statistics: not 0..1 pixel values.
    assert seg["image"].min() < -1.0


def test_orig_size_is_the_file_size(synthetic_root: Path) -> None:
    import cv2

    dm = make_dm(synthetic_root)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    for path, size in zip(batch["path"], batch["orig_size"], strict=True):
        h, w = cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[:2]
        assert size.tolist() == [h, w]


def test_val_and_test_loaders_give_every_image_once_with_its_mask(synthetic_root: Path) -> None:
    dm = make_dm(synthetic_root, val_fraction=0.25)
    dm.setup("fit")
    dm.setup("test")
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        batches = all_batches(loader)
        assert all({"mask", "has_mask", "label", "path"} <= set(b) for b in batches)
        labels = torch.cat([b["label"] for b in batches])
        assert set(labels.tolist()) == {0, 1, 2, 3}  # every class, healthy scans included
        paths = [p for b in batches for p in b["path"]]
        assert len(paths) == len(set(paths)) == len(dm.index.classification(split))
        has_mask = torch.cat([b["has_mask"] for b in batches])
        tumour_with_mask = int((has_mask & (labels != NO_TUMOR)).sum())
        assert tumour_with_mask == len(dm.index.segmentation(split))  # segmentation metrics: tumour images
    assert len(dm.test_dataloader().dataset) == N_TEST


def test_healthy_images_join_the_segmentation_stream_with_empty_masks(synthetic_root: Path) -> None:
    dm = make_dm(synthetic_root, augment="none")
    dm.setup("fit")
    index = dm.index
    n_tumour = len(index.segmentation("train"))
    n_healthy = sum(r.label == NO_TUMOR for r in index.classification("train"))
    dataset = dm.segmentation_dataset("train")
    assert len(dataset) == n_tumour + n_healthy
    healthy = [dataset[i] for i in range(len(dataset)) if dataset.specs[i].label == NO_TUMOR]
    assert len(healthy) == n_healthy > 0
    assert all(s["mask"].sum() == 0 for s in healthy)
    tumour = [dataset[i] for i in range(3)]
    assert all(s["mask"].sum() > 0 for s in tumour)

    off = make_dm(synthetic_root, healthy_in_segmentation=False)
    off.setup("fit")
    assert len(off.segmentation_dataset("train")) == n_tumour


def test_no_leakage_between_train_and_validation_in_either_loader(synthetic_root: Path) -> None:
    dm = make_dm(synthetic_root, val_fraction=0.3, seed=11)
    dm.setup("fit")
    train_paths = {p for b in dm.train_dataloader() for stream in b[0].values() for p in stream["path"]}
    val_paths = {p for b in dm.val_dataloader() for p in b["path"]}
    assert val_paths
    digest = lambda p: file_digest(Path(p).read_bytes())  # noqa: E731
    assert not {digest(p) for p in train_paths} & {digest(p) for p in val_paths}
    assert not {Path(p).stem for p in train_paths} & {Path(p).stem for p in val_paths}
    # Every training image is seen (nothing lost), validation is about 30% of train.
    n_val = len(dm.val_dataloader().dataset)
    assert abs(n_val - 0.3 * N_TRAIN) <= 4
    assert len(dm.train_dataloader().iterables["cls"].dataset) + n_val == N_TRAIN


def test_train_mode_is_passed_to_combined_loader(tree: TreeBuilder) -> None:
    dm = make_dm(tree.root, val_fraction=0.0, batch_size=2, healthy_in_segmentation=False, train_mode="min_size")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader._mode == "min_size"
    # 9 segmentation images, 12 classification images, batches of 2 (last one dropped): 4 vs 6 -> 4.
    assert len(list(loader)) == 4
    dm_cycle = make_dm(tree.root, val_fraction=0.0, batch_size=2, healthy_in_segmentation=False)
    dm_cycle.setup("fit")
    assert len(list(dm_cycle.train_dataloader())) == 6
    assert dm_cycle.val_dataloader() == []


def test_evaluation_dataloader_masks_and_has_mask(tree: TreeBuilder) -> None:
    # A tumour image without a segmentation pair: mask unknown.
    lonely = tree.cls("test", "glioma", "gl")
    dm = make_dm(tree.root, batch_size=64)
    dm.setup("test")
    batch = next(iter(dm.evaluation_dataloader("test")))
    assert len(batch["path"]) == 13
    for path, label, has_mask, mask in zip(
        batch["path"], batch["label"], batch["has_mask"], batch["mask"], strict=True
    ):
        if path == str(lonely):
            assert not has_mask and mask.sum() == 0
        elif label == NO_TUMOR:
            assert has_mask and mask.sum() == 0
        else:
            assert has_mask and mask.sum() > 0


def test_evaluation_masks_are_matched_by_content_when_names_differ(tree: TreeBuilder) -> None:
    cls_path, _, _ = tree.pair("test", "meningioma", "me")
    renamed = cls_path.with_name("renamed_copy.jpg")
    cls_path.rename(renamed)
    dm = make_dm(tree.root, batch_size=64)
    dm.setup("test")
    batch = next(iter(dm.evaluation_dataloader("test")))
    i = batch["path"].index(str(renamed))
    assert batch["has_mask"][i] and batch["mask"][i].sum() > 0


def test_predict_dataloader_covers_the_test_classification_images(synthetic_root: Path) -> None:
    dm = make_dm(synthetic_root, batch_size=64)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert len(batch["path"]) == N_TEST and set(batch["label"].tolist()) == {0, 1, 2, 3}


def test_cache_gives_the_same_samples(synthetic_root: Path) -> None:
    plain = make_dm(synthetic_root, keep_aspect=True)
    cached = make_dm(synthetic_root, keep_aspect=True, cache_images=True)
    for dm in (plain, cached):
        dm.setup("fit")
    assert cached.cache is not None and len(cached.cache.images) > 0 and plain.cache is None
    for a, b in [(plain.val_dataloader(), cached.val_dataloader())]:
        for x, y in zip(a, b, strict=True):
            assert x["path"] == y["path"]
            assert torch.equal(x["image"], y["image"])
            assert torch.equal(x["orig_size"], y["orig_size"])
            if "mask" in x:
                assert torch.equal(x["mask"], y["mask"])


def test_setup_stops_with_every_problem(tree: TreeBuilder) -> None:
    _, _, mask = tree.pair("train", "glioma", "gl")
    mask.unlink()
    bad = tree.cls("train", "pituitary", "xx")
    dm = make_dm(tree.root)
    with pytest.raises(DatasetError) as info:
        dm.setup("fit")
    assert "missing mask" in str(info.value) and str(bad) in str(info.value)


def test_missing_test_split_is_a_clear_error(tmp_path: Path) -> None:
    t = TreeBuilder(tmp_path / "d").valid(splits=("train",))
    dm = make_dm(t.root)
    dm.setup("fit")
    with pytest.raises(DatasetError, match="no test split"):
        dm.test_dataloader()


def test_null_root_generates_the_synthetic_default_in_synthetic_root(tmp_path: Path) -> None:
    target = tmp_path / "synthetic"
    dm = make_dm(None, synthetic_root=str(target), synthetic_train=12, synthetic_test=6)
    assert dm.dataset_root == target and dm.is_synthetic
    dm.prepare_data()
    assert (target / "classification_task" / "train").is_dir() and is_synthetic_dataset(target)
    dm.setup("fit")
    assert len(dm.index.records) > 0 and dm.index.root == target
    before = sorted(p.name for p in target.rglob("*.jpg"))
    make_dm(None, synthetic_root=str(target), synthetic_train=30).prepare_data()
    assert sorted(p.name for p in target.rglob("*.jpg")) == before  # an existing dataset is never overwritten

    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        make_dm(None, synthetic_root=str(other)).prepare_data()
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_missing_root_is_an_error_naming_it_and_nothing_is_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    dm = make_dm(typo, synthetic_root=str(tmp_path / "synthetic"))
    assert dm.dataset_root == typo and not dm.is_synthetic
    for hook in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(DatasetError) as info:
            hook()
        message = str(info.value)
        assert str(typo) in message and "does not exist" in message
        assert "check the path, or leave data.root unset (null) to use the synthetic dataset" in message
    assert not typo.exists() and not (tmp_path / "synthetic").exists()


def test_setup_before_the_synthetic_default_is_generated_says_so(tmp_path: Path) -> None:
    dm = make_dm(None, synthetic_root=str(tmp_path / "synthetic"))
    with pytest.raises(DatasetError, match="prepare_data"):
        dm.setup("fit")
    assert not (tmp_path / "synthetic").exists()


def test_dataset_root_and_is_synthetic_of_a_given_folder(synthetic_root: Path, tree: TreeBuilder) -> None:
    generated = make_dm(synthetic_root)  # a folder written by the generator is synthetic wherever it is
    assert generated.dataset_root == synthetic_root and generated.is_synthetic
    real = make_dm(tree.root)
    assert real.dataset_root == tree.root and not real.is_synthetic


def test_cli_fit_with_a_mistyped_root_exits_1_and_creates_nothing(tmp_path: Path, capsys) -> None:
    from brain_mtl.commands.main import main

    # The quickstart as shipped, with its synthetic default; the user mistypes --data.root.
    config = yaml.safe_load(QUICKSTART.read_text())
    config["data"].pop("synthesize_if_missing", None)  # the removed key, in case the shipped config still has it
    config["data"]["synthetic_root"] = str(tmp_path / "synthetic")
    config_path = tmp_path / "quickstart.yaml"
    config_path.write_text(yaml.safe_dump(config))
    typo = tmp_path / "typo"
    args = ["fit", "--config", str(config_path), "--data.root", str(typo), "--data.num_workers", "0"]
    args += ["--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false"]
    args += ["--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"error: {typo}: the dataset folder given as data.root does not exist" in err
    assert "leave data.root unset (null)" in err
    assert not typo.exists() and not (tmp_path / "synthetic").exists()
    assert not list(tmp_path.rglob("*.ckpt"))


def test_hyperparameters_and_docstring_cover_every_argument() -> None:
    dm = BrainTumorDataModule(image_size=96, keep_aspect=True)
    assert dm.hparams.image_size == 96 and dm.hparams.keep_aspect is True
    signature = inspect.signature(BrainTumorDataModule.__init__)
    doc = BrainTumorDataModule.__doc__
    for name, parameter in signature.parameters.items():
        if name == "self":
            continue
        assert f"    {name}:" in doc, name
        assert parameter.annotation is not inspect.Parameter.empty, name


def test_constructor_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="augment"):
        BrainTumorDataModule(augment="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="val_fraction"):
        BrainTumorDataModule(val_fraction=1.0)


def test_default_workers_leave_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for cpus, expected in ((1, 0), (2, 1), (4, 3), (32, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cpus: set(range(n)), raising=False)
        assert default_num_workers() == expected
    assert BrainTumorDataModule().num_workers == default_num_workers()


def test_workers_get_different_augmentations(tmp_path: Path) -> None:
    """albumentations' generator is copied into forked workers; samples must reseed it per worker."""
    t = TreeBuilder(tmp_path / "d")
    source = t.pair("train", "glioma", "gl")[0]
    for _ in range(7):  # eight copies of one image: any difference comes from augmentation
        cls_path, seg, _ = t.pair("train", "glioma", "gl")
        for path in (cls_path, seg):
            shutil.copy(source, path)
    for folder, code in (("meningioma", "me"), ("pituitary", "pi"), ("no_tumor", "no")):
        t.cls("train", folder, code)
    dm = make_dm(t.root, num_workers=2, batch_size=1, val_fraction=0.0, augment="strong", healthy_in_segmentation=False)
    dm.setup("fit")
    loader = dm.train_dataloader().iterables["seg"]
    images = [b["image"] for b in loader]
    worker0, worker1 = images[0::2], images[1::2]
    assert not all(torch.equal(a, b) for a, b in zip(worker0, worker1, strict=False))


def test_augmentation_follows_torch_seed(synthetic_root: Path) -> None:
    """Augmentation draws from torch's generator: seed_everything and checkpointed RNG states reach it."""
    dm = make_dm(synthetic_root, augment="strong", batch_size=2)
    dm.setup("fit")
    dataset = dm.segmentation_dataset("train")

    def draw(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [dataset[0]["image"] for _ in range(4)]

    first, again, other = draw(0), draw(0), draw(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert not all(torch.equal(first[0], x) for x in first[1:])  # successive draws differ
    # Evaluation pipelines are not random and leave torch's generator alone.
    state = torch.get_rng_state()
    dm.segmentation_dataset("val")[0]
    assert torch.equal(state, torch.get_rng_state())
