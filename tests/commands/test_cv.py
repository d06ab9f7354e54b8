"""``python -m brain_mtl cv``: every fold fitted and scored, finished folds skipped, a killed fold resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from brain_mtl.commands.main import main
from tests.task.conftest import REPO, state_dict_of, tiny_config

FOLDS = 2


@pytest.fixture
def cv_config(tiny_datasets, tmp_path):
    def make(out: Path, epochs: int = 1, callbacks: list | None = None) -> Path:
        path = tiny_config(tiny_datasets(48, 12, seed=0), out, epochs=epochs)
        config = yaml.safe_load(path.read_text())
        for callback in config["trainer"]["callbacks"]:
            callback.get("init_args", {}).pop("dirpath", None)  # cv gives each fold its own folder
        config["trainer"]["callbacks"] += callbacks or []
        config["trainer"]["logger"] = False
        config["trainer"]["callbacks"] = [
            c for c in config["trainer"]["callbacks"] if "LearningRateMonitor" not in c["class_path"]
        ]
        path.write_text(yaml.safe_dump(config))
        return path

    return make


def test_cv_fits_every_fold_then_summarises_them_and_skips_finished_folds(cv_config, tmp_path, capsys):
    run = tmp_path / "cv"
    config = cv_config(run)
    assert main(["cv", "--config", str(config), "--folds", str(FOLDS)]) == 0
    summary = json.loads((run / "cv_summary.json").read_text())
    folds = summary["folds"]
    assert [f["fold"] for f in folds] == list(range(FOLDS))
    for entry in folds:
        assert Path(entry["checkpoint"]).is_file() and f"fold{entry['fold']}" in entry["checkpoint"]
        assert 0.0 <= entry["figures"]["accuracy"] <= 1.0
    # The validation folds are disjoint and together hold every training image once (48 in the tiny dataset).
    validation = [set(f["validation"]) for f in folds]
    assert not validation[0] & validation[1]
    assert len(validation[0]) + len(validation[1]) == 48
    accuracies = [f["figures"]["accuracy"] for f in folds]
    assert summary["mean"]["accuracy"] == pytest.approx(sum(accuracies) / FOLDS)
    assert summary["sd"]["accuracy"] == pytest.approx(float(torch.tensor(accuracies).std()))
    members = yaml.safe_load((run / "ensemble.yaml").read_text())["ensemble"]["members"]
    assert [(run / m).resolve() for m in members] == [Path(f["checkpoint"]).resolve() for f in folds]
    assert "| mean |" in (run / "cv_summary.md").read_text()

    stamps = [(run / f"fold{k}" / "fold_done.json").stat().st_mtime_ns for k in range(FOLDS)]
    capsys.readouterr()
    assert main(["cv", "--config", str(config), "--folds", str(FOLDS)]) == 0
    assert capsys.readouterr().err.count("skipped") == FOLDS
    assert [(run / f"fold{k}" / "fold_done.json").stat().st_mtime_ns for k in range(FOLDS)] == stamps
    assert main(["cv", "--config", str(config), "--folds", str(FOLDS), "--summarize_only"]) == 0


def test_summarize_only_names_the_unfinished_folds(cv_config, tmp_path, capsys):
    config = cv_config(tmp_path / "cv")
    assert main(["cv", "--config", str(config), "--folds", "3", "--summarize_only"]) == 2
    err = capsys.readouterr().err
    assert "fold(s) 0, 1, 2 of 3" in err and "have no checkpoint" in err and "--data.num_folds 3" in err
    assert main(["cv", "--config", str(config), "--folds", "1"]) == 2
    assert main(["cv", "--config", str(config), "--folds", "2", "--data.fold", "1"]) == 2
    assert "set by cv for each fold" in capsys.readouterr().err


def test_a_fold_killed_mid_epoch_resumes_to_the_uninterrupted_weights(cv_config, tmp_path):
    straight = tmp_path / "straight"
    assert main(["cv", "--config", str(cv_config(straight, epochs=2)), "--folds", str(FOLDS)]) == 0

    run = tmp_path / "killed"
    kill = {"class_path": "tests.task.test_reliability.KillMidEpoch", "init_args": {"epoch": 1, "batch": 1}}
    killed = cv_config(run, epochs=2, callbacks=[kill])
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }
    process = subprocess.run(
        [sys.executable, "-m", "brain_mtl", "cv", "--config", str(killed), "--folds", str(FOLDS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode < 0, process.stderr[-2000:]  # killed in fold 0's second epoch
    assert not (run / "fold0" / "fold_done.json").exists() and (run / "fold0" / "checkpoints" / "last.ckpt").is_file()

    assert main(["cv", "--config", str(cv_config(run, epochs=2)), "--folds", str(FOLDS)]) == 0
    for k in range(FOLDS):
        expected = state_dict_of(straight / f"fold{k}" / "checkpoints" / "last.ckpt")
        got = state_dict_of(run / f"fold{k}" / "checkpoints" / "last.ckpt")
        assert all(torch.equal(expected[key], got[key]) for key in expected), f"fold {k} differs"


def test_folds_fitted_one_by_one_are_scored_and_summarised_by_summarize_only(cv_config, tmp_path):
    run = tmp_path / "cv"
    config = cv_config(run)
    for k in range(FOLDS):  # as one GPU, machine or SLURM array task per fold would
        fold_args = ["--data.num_folds", str(FOLDS), "--data.fold", str(k)]
        assert (
            main(["fit", "--config", str(config), *fold_args, "--trainer.default_root_dir", str(run / f"fold{k}")]) == 0
        )
    assert main(["cv", "--config", str(config), "--folds", str(FOLDS), "--summarize_only"]) == 0
    summary = json.loads((run / "cv_summary.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert all((run / f"fold{k}" / "validation_report" / "report.json").is_file() for k in range(FOLDS))


def test_test_scores_the_ensemble_that_cv_wrote_and_its_report_names_the_members(cv_config, tmp_path):
    run = tmp_path / "cv"
    config = cv_config(run)
    assert main(["cv", "--config", str(config), "--folds", str(FOLDS)]) == 0
    ensemble = run / "ensemble.yaml"
    out = tmp_path / "test"
    assert (
        main(["test", "--config", str(config), "--ckpt_path", str(ensemble), "--trainer.default_root_dir", str(out)])
        == 0
    )
    report = json.loads(next(out.rglob("report.json")).read_text())
    members = [str((run / m).resolve()) for m in yaml.safe_load(ensemble.read_text())["ensemble"]["members"]]
    assert report["meta"]["ensemble"] == str(ensemble)
    assert [str(Path(m).resolve()) for m in report["meta"]["ensemble_members"]] == members
    assert "the averaged probabilities of" in next(out.rglob("report.md")).read_text()
    assert main(["fit", "--config", str(config), "--ckpt_path", str(ensemble)]) == 1  # a fit resumes one checkpoint
