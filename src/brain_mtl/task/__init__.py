"""The task: the LightningModule that trains the joint network.

With its losses, training metrics, optimiser, random-state capture and encoder fine-tuning.
:class:`BrainTumorModule` is the research seam: override one hook (``configure_models``, ``configure_losses``,
``configure_metrics``, ``compute_loss``) to change one part.
"""

from brain_mtl.task.finetuning import EncoderFreeze
from brain_mtl.task.losses import JointLoss, LossParts
from brain_mtl.task.module import BrainTumorModule

__all__ = ["BrainTumorModule", "EncoderFreeze", "JointLoss", "LossParts"]
