"""Cross-validation folds: disjoint, covering, stratified by class, whole groups; the datamodule's fold split."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from brain_mtl.data import BrainTumorDataModule, index_dataset
from brain_mtl.data.split import carve_fold, fold_groups, same_image_groups
from tests.data.data_helpers import N_TRAIN


def _train(index):
    return [r for r in index.records if r.split == "train"]


def test_folds_are_disjoint_cover_train_once_and_keep_groups_whole(synthetic_root):
    index = index_dataset(synthetic_root)
    train = _train(index)
    folds = fold_groups(train, 4, seed=1)
    members = [[id(r) for group in fold for r in group] for fold in folds]
    flat = [m for fold in members for m in fold]
    assert len(flat) == len(set(flat)) == len(train)  # disjoint, and every record exactly once
    # Groups (an image's classification and segmentation copies, byte-identical files) never span two folds.
    fold_of = {m: k for k, fold in enumerate(members) for m in fold}
    groups = same_image_groups(train, near_duplicate_distance=4)
    assert any(len(g) > 1 for g in groups)
    for group in groups:
        assert len({fold_of[id(r)] for r in group}) == 1
    # Stratified: each class's images spread over the folds within one group's size.
    largest = max(sum(r.task == "classification" for r in g) for g in groups)
    for label in range(4):
        counts = [sum(r.task == "classification" and r.label == label for g in fold for r in g) for fold in folds]
        assert max(counts) - min(counts) <= largest, (label, counts)


def test_folds_depend_on_the_seed_only(synthetic_root):
    train = _train(index_dataset(synthetic_root))

    def paths(seed):
        return [sorted(str(r.path) for g in fold for r in g) for fold in fold_groups(train, 3, seed=seed)]

    assert paths(5) == paths(5)
    assert paths(5) != paths(6)
    with pytest.raises(ValueError, match="num_folds must be 2 or more"):
        fold_groups(train, 1)


def test_carve_fold_validates_on_one_fold_and_refuses_a_folder_with_its_own_val(synthetic_root):
    index = index_dataset(synthetic_root)
    carved = [carve_fold(index, 3, k, seed=2) for k in range(3)]
    val_sets = [{str(r.path) for r in c.records if r.split == "val"} for c in carved]
    assert not (val_sets[0] & val_sets[1]) and not (val_sets[1] & val_sets[2]) and not (val_sets[0] & val_sets[2])
    assert set().union(*val_sets) == {str(r.path) for r in _train(index)}
    with pytest.raises(ValueError, match=r"fold must be in \[0, 3\)"):
        carve_fold(index, 3, 3)
    with_val = replace(index, records=[replace(r, split="val") if r.split == "test" else r for r in index.records])
    with pytest.raises(ValueError, match="has a val split of its own"):
        carve_fold(with_val, 3, 0)


def test_the_datamodule_validates_on_its_fold_with_both_streams_together(synthetic_root):
    dm = BrainTumorDataModule(str(synthetic_root), image_size=32, num_workers=0, num_folds=4, fold=2, seed=7)
    dm.setup("fit")
    val = [r for r in dm.index.records if r.split == "val"]
    expected = {str(r.path) for g in fold_groups(_train(index_dataset(synthetic_root)), 4, seed=7)[2] for r in g}
    assert {str(r.path) for r in val} == expected
    # An image in the validation fold leaves both loaders: no stem is in train and val at once.
    train_stems = {r.stem for r in dm.index.records if r.split == "train"}
    assert not train_stems & {r.stem for r in val}
    assert sum(Counter(r.task for r in val).values()) == len(val) and 0 < len(val) < N_TRAIN * 2
    assert dm.hparams["num_folds"] == 4 and dm.hparams["fold"] == 2  # saved in the checkpoint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_folds": 1}, "num_folds >= 2"),
        ({"num_folds": 3, "fold": 3}, "0 <= fold < num_folds"),
        ({"fold": 1}, "needs data.num_folds"),
    ],
)
def test_bad_fold_settings_are_refused_with_the_fix(synthetic_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BrainTumorDataModule(str(synthetic_root), num_workers=0, **kwargs)
