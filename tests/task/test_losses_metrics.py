import pytest
import torch
import torch.nn.functional as F

from brain_mtl.losses import JointLoss, soft_dice_loss
from brain_mtl.metrics import FalseMaskRate, segmentation_metrics


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
