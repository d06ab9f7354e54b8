"""Fakes shared by the evaluation tests: a model with a known output and a datamodule over hand-made samples."""

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from brain_mtl.classes import CLASS_NAMES, NO_TUMOR

SIZE = 32
GL, ME, PI = CLASS_NAMES.index("glioma"), CLASS_NAMES.index("meningioma"), CLASS_NAMES.index("pituitary")


class Output(NamedTuple):
    mask_logits: torch.Tensor
    class_logits: torch.Tensor


class FakeNet(nn.Module):
    """Predicts mask = channel 0 > 0.5 (logit 20 * (x - 0.5)) and the class written in channel 1."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        mask_logits = (x[:, :1] - 0.5) * self.scale
        chosen = x[:, 1].mean(dim=(1, 2))
        class_logits = -4.0 * (torch.arange(len(CLASS_NAMES), dtype=x.dtype)[None] - chosen[:, None]) ** 2
        return Output(mask_logits, class_logits)


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


class FakeDataModule:
    def __init__(self, samples, train_paths=None, batch_size=3):
        self.samples = samples
        self.batch_size = batch_size
        if train_paths is not None:
            self.train_image_paths = train_paths

    def evaluation_dataloader(self, split="test"):
        assert split == "test"
        return DataLoader(self.samples, batch_size=self.batch_size, shuffle=False)
