import pytest
import torch
import torch.nn.functional as F

from brain_mtl.task.losses import JointLoss, soft_dice_loss
from brain_mtl.task.metrics import FalseMaskRate, segmentation_metrics


def test_joint_loss_is_weighted_sum_of_parts():
    torch.manual_seed(0)
    mask_logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.7).float()
    class_logits = torch.randn(3, 4)
    labels = torch.tensor([0, 3, 1])
    parts = JointLoss(mask_weight=2.0, class_weight=0.5)(mask_logits, mask, class_logits, labels)
    bce = F.binary_cross_entropy_with_logits(mask_logits, mask)
    ce = F.cross_entropy(class_logits, labels)
    assert torch.allclose(parts.mask, bce)
    assert torch.allclose(parts.cls, ce)
    assert torch.allclose(parts.total, 2.0 * bce + 0.5 * ce)


def test_joint_loss_with_one_part_only():
    parts = JointLoss()(class_logits=torch.zeros(2, 4), labels=torch.tensor([0, 1]))
    assert parts.mask is None
    assert torch.allclose(parts.total, torch.log(torch.tensor(4.0)))
    with pytest.raises(ValueError, match="needs"):
        JointLoss()()


def test_dice_bce_adds_soft_dice_and_perfect_prediction_has_no_dice_loss():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    perfect = (mask * 2 - 1) * 50  # logits far on the right side
    assert soft_dice_loss(perfect, mask) < 1e-3
    assert soft_dice_loss(-perfect, mask) > 0.9
    loss = JointLoss(mask_loss="dice_bce")
    logits = torch.randn(1, 1, 8, 8)
    expected = F.binary_cross_entropy_with_logits(logits, mask) + soft_dice_loss(logits, mask)
    assert torch.allclose(loss.mask_part(logits, mask), expected)


def test_label_smoothing_and_class_weights_reach_cross_entropy():
    logits = torch.randn(4, 4)
    labels = torch.tensor([0, 1, 2, 3])
    weights = [1.0, 2.0, 3.0, 4.0]
    loss = JointLoss(label_smoothing=0.1, class_weights=weights)
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weights), label_smoothing=0.1)
    assert torch.allclose(loss.class_part(logits, labels), expected)


def test_pooled_dice_is_pixel_f1_over_the_whole_epoch():
    pred = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    pred[0, 0, :2, :2] = 0.9  # 4 predicted pixels in image 0
    target[0, 0, :2, :] = 1  # 8 true pixels in image 0 -> tp 4, fn 4
    target[1, 0, 0, 0] = 1  # 1 true pixel missed in image 1 -> fn 1
    metrics = segmentation_metrics()
    metrics.update(pred, target)
    values = metrics.compute()
    tp, fp, fn = 4, 0, 5
    assert values["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert values["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert values["pixel_acc"] == pytest.approx((32 - fn) / 32)


def test_false_mask_rate_counts_images_with_enough_predicted_pixels():
    metric = FalseMaskRate(min_area=3)
    pred = torch.zeros(4, 1, 4, 4, dtype=torch.bool)
    pred[0, 0, 0, :3] = True  # 3 pixels: counted
    pred[1, 0, 0, :2] = True  # 2 pixels: below the minimum area
    metric.update(pred)
    assert metric.compute() == pytest.approx(1 / 4)


def _eval_batch(n: int = 6, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(0)
    mask = (torch.rand(n, 1, size, size, generator=generator) > 0.7).float()
    labels = torch.tensor([0, 1, 2, 3, 0, 3])[:n]
    mask[labels == 3] = 0
    return {
        "image": torch.randn(n, 3, size, size, generator=generator),
        "mask": mask,
        "has_mask": torch.ones(n, dtype=torch.bool),
        "label": labels,
        "path": [f"img_{i}.png" for i in range(n)],
    }


def test_val_loss_is_the_criterions_total_never_reweighted(tmp_path):
    """A subclass whose criterion weighs the parts differently from the hparams gets its own total as val/loss."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from brain_mtl.task.losses import JointLoss
    from brain_mtl.task.module import BrainTumorModule

    class Reweighted(BrainTumorModule):
        def configure_losses(self) -> None:
            self.criterion = JointLoss(mask_weight=3.0, class_weight=0.5)

    module = Reweighted(base_channels=4, depth=2, classifier_hidden=8)  # hparams keep both weights at 1
    batch = _eval_batch()
    samples = [{k: v[i] for k, v in batch.items()} for i in range(6)]
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (logged,) = trainer.validate(module, dataloaders=DataLoader(samples, batch_size=3), verbose=False)
    expected = 3.0 * logged["val/loss/mask"] + 0.5 * logged["val/loss/class"]
    assert logged["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert logged["val/loss"] != pytest.approx(logged["val/loss/mask"] + logged["val/loss/class"], rel=1e-3)


def test_compute_loss_follows_the_stage_not_the_module_mode():
    """Validation takes the class loss from the classification images only, whatever train()/eval() says."""
    from brain_mtl.models import UNetOutput
    from brain_mtl.task.module import BrainTumorModule

    module = BrainTumorModule(base_channels=4, depth=2, classifier_hidden=8)
    generator = torch.Generator().manual_seed(1)
    seg_logits, cls_logits = torch.randn(4, 4, generator=generator), torch.randn(4, 4, generator=generator)
    outputs = {"seg": UNetOutput(torch.randn(4, 1, 8, 8, generator=generator), seg_logits), "cls": cls_logits}
    labels = torch.tensor([0, 1, 2, 0])
    batch = {"seg": {"mask": torch.zeros(4, 1, 8, 8), "label": labels}, "cls": {"label": torch.tensor([3, 1, 2, 3])}}
    ce = torch.nn.functional.cross_entropy
    module.train()
    val = module.compute_loss(outputs, batch, "val")
    assert val.cls == pytest.approx(float(ce(cls_logits, batch["cls"]["label"])))
    module.eval()
    train = module.compute_loss(outputs, batch, "train")
    both = ce(torch.cat([seg_logits, cls_logits]), torch.cat([labels, batch["cls"]["label"]]))
    assert train.cls == pytest.approx(float(both))
