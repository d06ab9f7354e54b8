"""The evaluation report: segmentation, all-image and classification figures with intervals, for one split.

``python -m brain_mtl test`` writes it through the :class:`EvaluationReport` callback; :func:`evaluate` gives the
same report dict for a module and a datamodule, and :func:`write_report` writes it. See ``docs/evaluation.md``.
"""

from brain_mtl.evaluation.callback import EvaluationReport
from brain_mtl.evaluation.leakage import cross_split_duplicates
from brain_mtl.evaluation.report import (
    CONVENTIONS,
    ImageRecords,
    build_report,
    collect_records,
    data_facts,
    evaluate,
    report_markdown,
    write_report,
)

__all__ = [
    "CONVENTIONS",
    "EvaluationReport",
    "ImageRecords",
    "build_report",
    "collect_records",
    "cross_split_duplicates",
    "data_facts",
    "evaluate",
    "report_markdown",
    "write_report",
]
