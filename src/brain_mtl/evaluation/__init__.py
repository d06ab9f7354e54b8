"""The evaluation report: segmentation, all-image and classification figures with intervals, for the test split.

``python -m brain_mtl test`` writes it through the :class:`~brain_mtl.callbacks.EvaluationReport` callback, from
the per-image statistics the test step returns: :mod:`~brain_mtl.evaluation.records` gathers them,
:mod:`~brain_mtl.evaluation.build` computes the :class:`~brain_mtl.evaluation.report.Report`,
:mod:`~brain_mtl.evaluation.render` writes it; :mod:`~brain_mtl.evaluation.metrics` holds the per-image figures and
:mod:`~brain_mtl.evaluation.leakage` the images a test split shares with train. :func:`brain_mtl.callbacks.evaluate`
does all of it for a module and a datamodule in a notebook. Nothing here imports Lightning. See
``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Any

from brain_mtl import moved_attribute
from brain_mtl.evaluation.build import build_report
from brain_mtl.evaluation.leakage import leaked_duplicates
from brain_mtl.evaluation.records import ImageRecords
from brain_mtl.evaluation.render import report_markdown, write_report
from brain_mtl.evaluation.report import CONVENTIONS, Report, forward_convention

__all__ = [
    "CONVENTIONS",
    "ImageRecords",
    "Report",
    "build_report",
    "forward_convention",
    "leaked_duplicates",
    "report_markdown",
    "write_report",
]


_MOVED = {
    "evaluate": "brain_mtl.callbacks.report:evaluate",  # a Lightning test loop: a face, above the report code
    "cross_split_duplicates": "brain_mtl.evaluation.leakage:leaked_duplicates",  # one name, one thing
}


def __getattr__(name: str) -> Any:
    return moved_attribute(__name__, name, _MOVED)
