"""The evaluation report: segmentation, all-image and classification figures with intervals, for the test split.

``python -m brain_mtl test`` writes it through the :class:`~brain_mtl.callbacks.EvaluationReport` callback, from
the per-image statistics the test step returns: :mod:`~brain_mtl.evaluation.records` gathers them,
:mod:`~brain_mtl.evaluation.build` computes the :class:`~brain_mtl.evaluation.report.Report`,
:mod:`~brain_mtl.evaluation.render` writes it. :func:`evaluate` does all of it for a module and a datamodule in a
notebook. See ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brain_mtl.evaluation.build import build_report
from brain_mtl.evaluation.leakage import cross_split_duplicates
from brain_mtl.evaluation.records import ImageRecords
from brain_mtl.evaluation.render import report_markdown, write_report
from brain_mtl.evaluation.report import CONVENTIONS, Report, forward_convention

if TYPE_CHECKING:
    from brain_mtl.callbacks.report import evaluate

__all__ = [
    "CONVENTIONS",
    "ImageRecords",
    "Report",
    "build_report",
    "cross_split_duplicates",
    "evaluate",
    "forward_convention",
    "report_markdown",
    "write_report",
]


def __getattr__(name: str) -> Any:
    # evaluate runs a Lightning test loop: imported on first use, so the report code stays free of Lightning.
    if name == "evaluate":
        from brain_mtl.callbacks.report import evaluate

        return evaluate
    raise AttributeError(f"module 'brain_mtl.evaluation' has no attribute {name!r}")
