"""The one post-processing path: probabilities, threshold, gate, original size."""

import numpy as np
import pytest
import torch

from brain_mtl.classes import NO_TUMOR
from brain_mtl.models.postprocess import apply_gate, gate_veto, postprocess, probabilities, to_original_size


def test_probabilities_threshold_and_gate():
    mask_logits = torch.full((3, 1, 4, 4), -5.0)
    mask_logits[0, 0, :2, :2] = 5.0  # 4 px, class glioma: kept
    mask_logits[1, 0, :, :] = 5.0  # 16 px, class no_tumor: vetoed by the class head
    mask_logits[2, 0, 0, 0] = 5.0  # 1 px, class glioma: vetoed by min_area 2
    class_logits = torch.full((3, 4), -3.0)
    class_logits[[0, 2], 0] = 3.0
    class_logits[1, NO_TUMOR] = 3.0
    mask_probs, class_probs = probabilities(mask_logits, class_logits)
    assert torch.allclose(class_probs.sum(1), torch.ones(3)) and mask_probs.dtype == torch.float32
    plain = postprocess(mask_logits, class_logits, threshold=0.5)
    assert plain.masks.flatten(1).sum(1).tolist() == [4, 16, 1] and not plain.vetoed.any()
    gated = postprocess(mask_logits, class_logits, threshold=0.5, gate=True, gate_min_area=2)
    assert gated.masks.flatten(1).sum(1).tolist() == [4, 0, 0]
    assert gated.vetoed.tolist() == [False, True, True]
    assert gated.class_index.tolist() == [0, NO_TUMOR, 0]
    assert gate_veto(class_probs, torch.tensor([4, 16, 1])).tolist() == [False, True, False]
    assert torch.equal(apply_gate(plain.masks, class_probs, min_area=2), gated.masks)
    # The threshold is strict: a probability equal to it is not tumour.
    assert not postprocess(torch.zeros(1, 1, 2, 2), torch.zeros(1, 4), threshold=0.5).masks.any()


def test_to_original_size_cuts_the_letterbox_before_resizing():
    grid = np.zeros((8, 8), np.float32)
    grid[2:6, :] = 1.0  # a 16x8 (H x W) image letterboxed into 8x8 fills rows 2..5
    restored = to_original_size(torch.from_numpy(grid)[None], (8, 16), keep_aspect=True)
    assert restored.shape == (8, 16) and restored.min() == pytest.approx(1.0)
    squashed = to_original_size(grid, (8, 16), keep_aspect=False)
    assert squashed.shape == (8, 16) and squashed.min() == pytest.approx(0.0)
