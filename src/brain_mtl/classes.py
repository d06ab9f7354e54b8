"""The tumour classes: their order, names and the codes used in file and folder names, in one place.

The class index order is fixed library-wide (and is what the classification head's outputs mean):
``0 glioma, 1 meningioma, 2 pituitary, 3 no_tumor``.
"""

from __future__ import annotations

from collections.abc import Mapping

CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "pituitary", "no_tumor")
"""Class names in index order."""

NUM_CLASSES = len(CLASS_NAMES)
NO_TUMOR = CLASS_NAMES.index("no_tumor")
"""Index of the healthy class: its images have a known-empty mask."""

TUMOR_CODES: dict[str, str] = {"gl": "glioma", "me": "meningioma", "pi": "pituitary", "no": "no_tumor"}
"""BRISC file-name code -> class name (the code written into generated file names)."""

DEFAULT_NAME_MAP: dict[str, str] = {
    # BRISC 2025 file-name codes ("nt" is documented in the dataset's README as well as "no").
    "gl": "glioma",
    "me": "meningioma",
    "pi": "pituitary",
    "no": "no_tumor",
    "nt": "no_tumor",
    # Folder names of BRISC and of other public brain-tumour MRI datasets.
    "glioma": "glioma",
    "meningioma": "meningioma",
    "pituitary": "pituitary",
    "no_tumor": "no_tumor",
    "notumor": "no_tumor",
    "no_tumour": "no_tumor",
    "glioma_tumor": "glioma",
    "meningioma_tumor": "meningioma",
    "pituitary_tumor": "pituitary",
}
"""Every spelling the library recognises by default (lower case) -> canonical class name."""


def class_index(name_or_code: str, name_map: Mapping[str, str] | None = None) -> int:
    """Return the class index of a folder name or file-name code.

    Args:
        name_or_code: e.g. ``"gl"``, ``"glioma"``, ``"notumor"`` (case-insensitive).
        name_map: extra or replacement spellings -> canonical class name, merged over the defaults.

    Raises:
        KeyError: the spelling is unknown; the message lists the known ones. Never falls back to a class.
    """
    mapping = {**DEFAULT_NAME_MAP, **{k.lower(): v for k, v in (name_map or {}).items()}}
    canonical = mapping.get(name_or_code.lower())
    if canonical is None or canonical not in CLASS_NAMES:
        raise KeyError(
            f"unknown class code or name {name_or_code!r}; known: {sorted(mapping)}. "
            "Add it to the class-name map (data.class_name_map) if your dataset spells a class differently."
        )
    return CLASS_NAMES.index(canonical)
