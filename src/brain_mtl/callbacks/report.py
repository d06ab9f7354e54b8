"""The evaluation report callback: gathers what ``test_step`` measured on each image and writes the report."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from brain_mtl.callbacks.tensorboard import tensorboard_writer
from brain_mtl.checkpoints import read_checkpoint
from brain_mtl.evaluation.build import build_report
from brain_mtl.evaluation.leakage import datamodule_duplicates, datamodule_near_duplicates
from brain_mtl.evaluation.records import ImageRecords
from brain_mtl.evaluation.render import write_report
from brain_mtl.evaluation.report import Report

if TYPE_CHECKING:
    from brain_mtl.data import BrainTumorDataModule
    from brain_mtl.task.module import BrainTumorModule

__all__ = ["DatasetFacts", "EvaluationReport", "evaluate"]


@runtime_checkable
class DatasetFacts(Protocol):
    """What a datamodule says about its data, for the report's ``meta`` (:class:`BrainTumorDataModule` has both).

    Attributes:
        dataset_root: the dataset folder.
        is_synthetic: whether the data was written by the synthetic generator.
    """

    dataset_root: Path
    is_synthetic: bool


class EvaluationReport(Callback):
    """Write ``report.json``, ``report.md``, ``confusion_matrix.png`` and ``per_image.csv`` after testing.

    During ``trainer.test`` (``python -m brain_mtl test``) the callback keeps the per-image statistics that each
    :meth:`~brain_mtl.task.module.BrainTumorModule.test_step` returns (class probabilities, pixel counts, areas, HD95);
    at the end it gathers them from every process, builds the report (no second pass over the split: the report
    and the logged ``test/...`` metrics come from the same forward passes), writes it into the run's log directory
    (``trainer.log_dir``, or ``trainer.default_root_dir`` without a logger), and logs the headline numbers to
    TensorBoard as ``report/<name>`` (with the gate: ``report/gated/<name>``). Only global rank 0 writes.

    Test-time augmentation is the module's ``tta`` setting (``--model.tta flip``): the test metrics and the report
    then both score the averaged views.

    Args:
        mask_gate: also report the figures with masks emptied when the class head says no tumour.
        gate_min_area: the gate also empties predicted masks smaller than this many pixels (0: class veto only).
        bootstrap: bootstrap resamples for the 95% intervals of the headline numbers (0: no intervals).
        seed: seed of the bootstrap.
        check_duplicates: list byte-identical images shared by the training images and the test split.
    """

    def __init__(
        self,
        mask_gate: bool = True,
        gate_min_area: int = 0,
        bootstrap: int = 1000,
        seed: int = 0,
        check_duplicates: bool = True,
    ) -> None:
        super().__init__()
        self.mask_gate = mask_gate
        self.gate_min_area = gate_min_area
        self.bootstrap = bootstrap
        self.seed = seed
        self.check_duplicates = check_duplicates
        self.records = ImageRecords()
        self.report: Report | None = None
        """The last report (rank 0 only), for inspection after ``trainer.test``."""
        self.paths: tuple[Path, Path] | None = None
        """(report.json, report.md) of the last report."""

    @staticmethod
    def output_dir(trainer: Trainer) -> Path:
        """Where the report goes: the logger's version folder, else the trainer's root folder."""
        log_dir = trainer.log_dir if trainer.loggers else None
        return Path(log_dir or trainer.default_root_dir)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self.records = ImageRecords()
        self.report = None

    def on_test_batch_end(  # noqa: D102
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx=0
    ) -> None:
        if not isinstance(outputs, dict) or "stats" not in outputs:
            raise RuntimeError(
                "EvaluationReport needs test_step to return the per-image 'stats' of BrainTumorModule.shared_step; "
                f"{type(pl_module).__name__}.test_step returned {type(outputs).__name__}"
            )
        paths = batch.get("path") or [f"image_{len(self.records) + i}" for i in range(len(batch["label"]))]
        self.records.add(paths, batch["label"].cpu().tolist(), batch["has_mask"].cpu().tolist(), outputs["stats"])

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Gather the records, build and write the report, log the headline numbers (rank 0 writes)."""
        out_dir = self.output_dir(trainer)  # a collective under DDP: every process resolves it
        records = _gather(trainer, self.records)
        if trainer.is_global_zero:
            self.report = self.build(records, pl_module, trainer)
            self.paths = write_report(self.report, out_dir)
            rank_zero_info(f"Evaluation report written to {self.paths[1]} and {self.paths[0]}")
            _log_scalars(trainer, self.report.headline)
        trainer.strategy.barrier("evaluation_report")

    def build(self, records: ImageRecords, module: BrainTumorModule, trainer: Trainer) -> Report:
        """The report of gathered records, with the module's settings and the datamodule's facts."""
        if len(records) == 0:
            raise ValueError("the test loop yielded no image; nothing to report")
        datamodule: BrainTumorDataModule | None = trainer.datamodule
        duplicates, note = None, "Not requested."
        near, near_note = None, "Not requested."
        split = getattr(datamodule, "test_split", "test")
        meta: dict[str, Any] = {
            "split": split,
            "ckpt_path": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "precision": str(trainer.precision),
            # An ensemble file scored as one network (BrainTumorCLI sets it): its file and members.
            **(module.ensemble or {}),
            "data_root": None,
            "data_synthetic": None,
        }
        if isinstance(datamodule, DatasetFacts):
            meta["data_root"] = str(Path(datamodule.dataset_root).absolute())
            meta["data_synthetic"] = bool(datamodule.is_synthetic)
            meta["class_name_map"] = dict(getattr(datamodule, "class_name_map", None) or {})
        trained_on = _training_root(meta)
        if trained_on is not None and meta["data_root"] is not None:
            meta["trained_on"] = trained_on
            # Another folder than the one the network was trained on: external validation.
            meta["external"] = Path(trained_on).resolve() != Path(meta["data_root"]).resolve()
        if datamodule is not None:
            if self.check_duplicates:
                duplicates, note = datamodule_duplicates(datamodule, split, records.paths)
                near, near_note = datamodule_near_duplicates(datamodule, split)
        elif self.check_duplicates:
            note = "Not checked: the test loop had no BrainTumorDataModule to compare with."
        hp = module.hparams
        return build_report(
            records,
            mask_gate=self.mask_gate,
            gate_min_area=self.gate_min_area,
            false_mask_min_area=int(hp.false_mask_min_area),
            bootstrap=self.bootstrap,
            seed=self.seed,
            mask_threshold=float(hp.mask_threshold),
            duplicates=duplicates,
            duplicates_note=note,
            near_duplicates=near,
            near_duplicates_note=near_note,
            meta=meta,
            tta=hp.get("tta", "none"),
            class_temperature=float((module.ensemble or {}).get("class_temperature", 1.0)),
        )


def _training_root(meta: dict[str, Any]) -> str | None:
    """The dataset folder the scored checkpoint (an ensemble's first member) was trained on, as it recorded it."""
    members = meta.get("ensemble_members") or ([meta["ckpt_path"]] if meta.get("ckpt_path") else [])
    if not members or not Path(members[0]).is_file():
        return None
    try:
        settings = read_checkpoint(members[0]).get("datamodule_hyper_parameters") or {}
    except (OSError, ValueError):
        return None
    root = settings.get("root") or settings.get("synthetic_root")
    return str(Path(root).absolute()) if root else None


def _gather(trainer: Trainer, records: ImageRecords) -> ImageRecords:
    """Every process's records on every process, each image once (a distributed sampler repeats some)."""
    import torch.distributed as dist

    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        gathered: list[ImageRecords | None] = [None] * trainer.world_size
        dist.all_gather_object(gathered, records)
        merged = ImageRecords()
        for part in gathered:
            if part is not None:
                merged.extend(part)
        records = merged
    return records.unique()


def _log_scalars(trainer: Trainer, headline: dict[str, float]) -> None:
    writer = tensorboard_writer(trainer)
    if writer is None:
        return
    for name, value in headline.items():
        if value is not None and math.isfinite(value):
            writer.add_scalar(f"report/{name}", value, global_step=trainer.global_step)
    writer.flush()


def evaluate(
    module: BrainTumorModule,
    datamodule: BrainTumorDataModule,
    *,
    accelerator: str = "auto",
    precision: str | int = "32-true",
    output_dir: str | Path | None = None,
    **options: Any,
) -> Report:
    """Test a module on the datamodule's test split and return the report (and write it when asked).

    A convenience for notebooks: a ``Trainer.test`` run with :class:`EvaluationReport` (the one path that
    ``python -m brain_mtl test`` takes), without a logger.

    Args:
        module: the trained module.
        datamodule: the data; its ``test`` split is evaluated.
        accelerator: Lightning accelerator.
        precision: Lightning precision of the test loop (``32-true`` by default).
        output_dir: where to write the report files; None keeps them in a temporary folder that is removed.
        **options: :class:`EvaluationReport` arguments (``mask_gate``, ``gate_min_area``, ``bootstrap``, ``seed``,
            ``check_duplicates``).
    """
    callback = EvaluationReport(**options)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            accelerator=accelerator,
            devices=1,
            precision=precision,
            logger=False,
            callbacks=[callback],
            default_root_dir=str(output_dir or scratch),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.test(module, datamodule=datamodule, verbose=False)
    assert callback.report is not None
    return callback.report
