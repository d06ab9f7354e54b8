"""Synthetic T1-weighted brain MRI slices in the BRISC 2025 folder layout (BRISC itself can never be downloaded).

:mod:`~brain_mtl.data.synthetic.anatomy` draws a healthy head, :mod:`~brain_mtl.data.synthetic.phantom` adds a
tumour and scanner effects (:func:`synthesize_slice`), :mod:`~brain_mtl.data.synthetic.writer` writes a whole dataset
(:func:`generate_synthetic_dataset`) and recognises one afterwards (:func:`is_synthetic_dataset`). See
``docs/data.md``.
"""

from brain_mtl.data.synthetic.phantom import noisy_mask_png, synthesize_slice
from brain_mtl.data.synthetic.writer import (
    SYNTHETIC_MARKER,
    SynthesisReport,
    generate_synthetic_dataset,
    is_synthetic_dataset,
)

__all__ = [
    "SYNTHETIC_MARKER",
    "SynthesisReport",
    "generate_synthetic_dataset",
    "is_synthetic_dataset",
    "noisy_mask_png",
    "synthesize_slice",
]
