"""The speed settings: channels-last memory layout, the per-machine default precision, the host allocator."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from brain_mtl.commands import lightning as lightning_cli
from brain_mtl.task.module import BrainTumorModule
from tests.task.conftest import REPO


def test_channels_last_changes_the_layout_not_the_result():
    torch.manual_seed(0)
    plain = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8, channels_last=False).eval()
    fast = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8, channels_last=True).eval()
    fast.load_state_dict(plain.state_dict())
    for module in (plain, fast):
        module.setup("test")
    conv = next(p for p in fast.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert next(p for p in plain.model.parameters() if p.dim() == 4).is_contiguous()
    images = torch.randn(2, 3, 32, 32)
    laid_out = fast.to_layout(images.clone())
    assert laid_out.is_contiguous(memory_format=torch.channels_last)
    assert plain.to_layout(images) is images  # channels_last off: the batch as it came
    with torch.no_grad():
        a, b = plain(images), fast(images)  # forward lays the batch out itself
    torch.testing.assert_close(a.mask_logits, b.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.class_logits, b.class_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("cuda", "cuda_bf16", "cpu_amx", "accelerator", "expected"),
    [
        (True, True, False, "auto", "bf16-mixed"),
        (True, False, False, "gpu", "16-mixed"),
        (True, True, False, "cpu", "32-true"),  # a CPU run on a GPU machine: the CPU decides
        (False, False, True, "auto", "bf16-mixed"),
        (False, False, False, "auto", "32-true"),
        (False, False, False, None, "32-true"),
    ],
)
def test_default_precision_never_asks_for_fp16_on_a_cpu(monkeypatch, cuda, cuda_bf16, cpu_amx, accelerator, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: cuda_bf16)
    monkeypatch.setattr(lightning_cli, "cpu_has_amx", lambda: cpu_amx)
    assert lightning_cli.default_precision(accelerator) == expected


def test_a_null_precision_in_a_config_becomes_the_machines_default(tmp_path, monkeypatch):
    import yaml

    from brain_mtl.commands.lightning import BrainTumorCLI
    from brain_mtl.data import BrainTumorDataModule

    monkeypatch.setattr(lightning_cli, "default_precision", lambda accelerator="auto": "bf16-mixed")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"precision": None, "accelerator": "cpu", "logger": False}}))
    cli = BrainTumorCLI(
        BrainTumorModule, BrainTumorDataModule, args=["--config", str(config)], run=False, save_config_callback=None
    )
    assert str(cli.trainer.precision) == "bf16-mixed"


# ----------------------------------------------------------------------------------------------- host allocator
FAULTS_ON_REUSE = """
import resource, torch
from brain_mtl.commands.allocator import keep_freed_memory

applied = keep_freed_memory()
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(16, 1, 3, padding=1),
)
images = torch.randn(8, 3, 256, 256)  # activations of 32 MiB: above glibc's largest mmap threshold
for step in range(5):  # the last steps reuse what the first ones freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(images).square().mean().backward()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults_on_reuse(allocator_env: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "BRAIN_MTL_ALLOCATOR"}
    if allocator_env is not None:
        env["BRAIN_MTL_ALLOCATOR"] = allocator_env
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_ON_REUSE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting applies to glibc only")
def test_keep_freed_memory_lets_a_training_step_reuse_freed_pages():
    applied, kept = _faults_on_reuse(None)
    assert applied
    # The control: glibc's defaults unmap each large buffer on free and fault its pages in again every step.
    applied, control = _faults_on_reuse("system")
    assert not applied
    assert control > 50_000
    # The last step reuses the pages that the steps before it freed: usually 0 faults (the control about 180,000),
    # 1,024 and 8,192 seen once each on busy suite runs (the kernel reclaiming or splitting pages meanwhile); a
    # step that faulted its buffers in again would fault as often as the control.
    assert kept * 10 < control


def test_every_command_sets_the_allocator_before_it_runs(monkeypatch, tmp_path):
    from brain_mtl.commands import main as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["check-data", "--root", str(tmp_path / "missing")]) == 1
    assert calls == [True]


# ----------------------------------------------------------------------------------------------- the GPU fit check
def _precision_check():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import fit_precision_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return fit_precision_check


def test_the_fit_precision_check_flags_what_it_must():
    check = _precision_check()
    good = {
        "requested": "16-mixed",
        "precision": "16-mixed",
        "steps": 5,
        "first": 1.0,
        "last": 0.5,
        "finite": True,
        "scales": [65536.0] * 5,
    }
    assert check.failures({**good, "scaler_steps": 5}, 5) == []
    assert check.failures({**good, "scaler_steps": 0, "scales": []}, 5) == ["GradScaler active on 0 of 5 steps"]
    bf16 = {**good, "requested": "bf16-mixed", "precision": "bf16-mixed", "scaler_steps": 0, "scales": []}
    assert check.failures(bf16, 5) == []
    assert check.failures({**bf16, "scaler_steps": 5}, 5) == ["a GradScaler in bf16-mixed (only 16-mixed needs one)"]
    assert check.failures({**bf16, "requested": "16-mixed", "finite": False, "last": 1.5}, 4) == [
        "trained in bf16-mixed, not the requested 16-mixed",
        "trained 5 steps, not 4",
        "a non-finite training loss",
        "the loss did not fall (1.0000 -> 1.5000)",
    ]


def test_the_fit_precision_check_runs_on_a_cpu(tmp_path):
    """The script a GPU machine runs, on a tiny network: it fits through the CLI and checks the runs."""
    command = [
        sys.executable, str(REPO / "benchmarks" / "fit_precision_check.py"),
        "--accelerator", "cpu", "--precisions", "32-true", "bf16-mixed", "--steps", "12", "--size", "32",
        "--width", "4", "--lr", "0.01", "--n-train", "60", "--n-test", "20",
        "--configs", str(REPO / "configs" / "brisc_unet.yaml"), "--compile", "false",
        "--data-cache", str(tmp_path / "data"), "--scratch", str(tmp_path / "runs"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "brisc_unet.yaml | 32-true | 12 steps | loss" in result.stdout
    assert "brisc_unet.yaml | bf16-mixed | 12 steps | loss" in result.stdout
    assert result.stdout.rstrip().endswith("ALL CHECKS PASSED")


def test_the_fit_precision_check_records_a_gradscalers_scale():
    """On a CPU Lightning turns 16-mixed into bf16, so the scaler branch is exercised here with a CPU GradScaler."""
    from types import SimpleNamespace

    check = _precision_check()
    recorder = check.StepRecorder()
    scaled = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=torch.amp.GradScaler("cpu", init_scale=1024.0)))
    unscaled = SimpleNamespace(precision_plugin=SimpleNamespace())
    recorder.on_train_batch_end(scaled, None, {"loss": torch.tensor(0.5)}, None, 0)
    recorder.on_train_batch_end(unscaled, None, torch.tensor(0.25), None, 1)
    assert recorder.losses == [0.5, 0.25]
    assert recorder.scales == [1024.0, None]
