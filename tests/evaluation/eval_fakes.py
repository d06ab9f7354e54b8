"""Fakes shared by the evaluation tests: a network with a known output, and a test loop over hand-made samples."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from brain_mtl.callbacks import EvaluationReport
from brain_mtl.classes import CLASS_NAMES, NO_TUMOR
from brain_mtl.models import UNetOutput
from brain_mtl.task.module import BrainTumorModule

SIZE = 32
GL, ME, PI = CLASS_NAMES.index("glioma"), CLASS_NAMES.index("meningioma"), CLASS_NAMES.index("pituitary")


class FakeNet(nn.Module):
    """Predicts mask = channel 0 > 0.5 (logit 20 * (x - 0.5)) and the class written in channel 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        mask_logits = (x[:, :1] - 0.5) * self.scale
        chosen = x[:, 1].mean(dim=(1, 2))
        class_logits = -4.0 * (torch.arange(len(CLASS_NAMES), dtype=x.dtype)[None] - chosen[:, None]) ** 2
        return UNetOutput(mask_logits, class_logits)


def square(top, left, side):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


EMPTY = np.zeros((SIZE, SIZE), dtype=bool)

# (label, truth, prediction, predicted class, has_mask)
CASES = [
    (GL, square(4, 4, 8), square(6, 6, 8), GL, True),  # overlap 6x6
    (ME, square(10, 10, 6), square(10, 10, 6), ME, True),  # perfect
    (PI, square(20, 20, 4), EMPTY, PI, True),  # missed: HD95 undefined
    (NO_TUMOR, EMPTY, square(0, 0, 5), NO_TUMOR, True),  # false mask of 25 px, vetoed by the gate
    (NO_TUMOR, EMPTY, EMPTY, GL, True),  # misclassified, no mask
    (NO_TUMOR, EMPTY, square(30, 30, 2), NO_TUMOR, True),  # 4 px speck
    (GL, EMPTY, square(2, 2, 9), GL, False),  # tumour without a known mask: not in segmentation
    (ME, square(3, 20, 5), square(3, 20, 5), NO_TUMOR, True),  # perfect mask, but the gate will veto it
]


def make_samples(tmp_path):
    samples = []
    for i, (label, truth, pred, pred_class, has_mask) in enumerate(CASES):
        image = torch.zeros(3, SIZE, SIZE)
        image[0] = torch.from_numpy(pred.astype(np.float32))
        image[1] = float(pred_class)
        path = tmp_path / "test" / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"image {i}".encode())
        samples.append(
            {
                "image": image,
                "mask": torch.from_numpy(truth.astype(np.float32))[None],
                "has_mask": torch.tensor(has_mask),
                "label": torch.tensor(label),
                "path": str(path),
                "orig_size": torch.tensor([SIZE, SIZE]),
            }
        )
    return samples


class FakeModule(BrainTumorModule):
    """The real task with :class:`FakeNet` as its network (``configure_models`` is the documented hook)."""

    def configure_models(self) -> None:
        self.model = FakeNet()


class FakeDataModule(pl.LightningDataModule):
    """The samples as the test split; ``dataset_root``/``is_synthetic``/``train_image_paths`` as given."""

    def __init__(self, samples, train_paths=None, batch_size=3, dataset_root=None, is_synthetic=False):
        super().__init__()
        self.samples = samples
        self.batch_size = batch_size
        self.dataset_root = Path(dataset_root) if dataset_root else Path(samples[0]["path"]).parent
        self.is_synthetic = is_synthetic
        if train_paths is not None:
            self.train_image_paths = train_paths

    def test_dataloader(self):
        return DataLoader(self.samples, batch_size=self.batch_size, shuffle=False)


def make_trainer(root, logger, callback) -> pl.Trainer:
    """A quiet CPU trainer with one callback."""
    return pl.Trainer(
        default_root_dir=root,
        logger=logger,
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def run_test(samples, root, module=None, datamodule=None, logger=False, **options):
    """``trainer.test`` with :class:`EvaluationReport`; returns the callback (its ``report`` and ``paths``)."""
    options.setdefault("bootstrap", 0)
    options.setdefault("check_duplicates", False)
    callback = EvaluationReport(**options)
    trainer = make_trainer(root, logger, callback)
    module = module or FakeModule()
    if datamodule is False:  # a bare loader: no datamodule facts
        trainer.test(module, dataloaders=DataLoader(samples, batch_size=3), verbose=False)
    else:
        trainer.test(module, datamodule=datamodule or FakeDataModule(samples), verbose=False)
    return callback
