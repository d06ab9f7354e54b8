"""Each metric against an independent computation on hand-made masks whose answer is known."""

import math

import numpy as np
import pytest
import torch

from brain_mtl.evaluation import metrics as M
from brain_mtl.evaluation import statistics as S
from brain_mtl.task.metrics import classification_metrics


def square(shape, top, left, side):
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def pixel_sets(mask):
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}


def brute_boundary(mask):
    """Mask pixels with a 4-neighbour outside the mask or outside the image, by explicit loops."""
    h, w = mask.shape
    out = set()
    for r, c in pixel_sets(mask):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < h and 0 <= cc < w) or not mask[rr, cc]:
                out.add((r, c))
                break
    return out


def brute_hd95(pred, truth):
    """All point pairs between the two boundaries; max of the two directed 95th percentiles."""
    a = np.array(sorted(brute_boundary(pred)), dtype=np.float64)
    b = np.array(sorted(brute_boundary(truth)), dtype=np.float64)
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


# ------------------------------------------------------------------------------------------- overlap


def test_two_offset_squares_counts_dice_iou_accuracy():
    shape = (40, 50)
    pred = square(shape, 10, 10, 20)
    truth = square(shape, 15, 14, 20)
    p, t = pixel_sets(pred), pixel_sets(truth)
    tp, fp, fn = len(p & t), len(p - t), len(t - p)
    assert (tp, fp, fn) == (15 * 16, 400 - 240, 400 - 240)  # the squares overlap in a 15 x 16 rectangle
    counts = M.confusion_counts(pred, truth)
    assert counts == (tp, fp, fn, 40 * 50 - tp - fp - fn)
    assert M.dice_score(*counts[:3]) == pytest.approx(2 * 240 / 800)
    assert M.iou_score(*counts[:3]) == pytest.approx(240 / 560)
    assert M.pixel_accuracy(*counts) == pytest.approx((2000 - 320) / 2000)


def test_empty_vs_empty_is_perfect():
    empty = np.zeros((16, 16), dtype=bool)
    counts = M.confusion_counts(empty, empty)
    assert counts == (0, 0, 0, 256)
    assert M.dice_score(*counts[:3]) == 1.0
    assert M.iou_score(*counts[:3]) == 1.0
    assert M.hd95(empty, empty) == 0.0
    assert M.all_image_dice([0], [0], [0]) == 1.0


@pytest.mark.parametrize("which", ["pred_empty", "truth_empty"])
def test_empty_vs_non_empty(which):
    empty = np.zeros((16, 16), dtype=bool)
    full = square((16, 16), 4, 4, 3)
    pred, truth = (empty, full) if which == "pred_empty" else (full, empty)
    counts = M.confusion_counts(pred, truth)
    assert counts.tp == 0 and counts.fp + counts.fn == 9
    assert M.dice_score(*counts[:3]) == 0.0
    assert M.iou_score(*counts[:3]) == 0.0
    assert math.isnan(M.hd95(pred, truth))


def test_single_pixel():
    shape = (12, 12)
    a = square(shape, 3, 3, 1)
    b = square(shape, 3, 7, 1)
    assert M.dice_score(*M.confusion_counts(a, a)[:3]) == 1.0
    assert M.hd95(a, a) == 0.0
    assert M.dice_score(*M.confusion_counts(a, b)[:3]) == 0.0
    assert M.hd95(a, b) == pytest.approx(4.0)
    c = square(shape, 6, 7, 1)  # 3 down, 4 right: a 3-4-5 triangle
    assert M.hd95(a, c) == pytest.approx(5.0, abs=1e-4)
    assert pixel_sets(M.mask_boundary(a)) == {(3, 3)}


def test_pooled_differs_from_per_image_mean():
    # A big perfect tumour and a small completely missed one: pooled Dice is dominated by the big one.
    big = square((32, 32), 0, 0, 20)
    small = square((32, 32), 10, 10, 2)
    empty = np.zeros((32, 32), dtype=bool)
    counts = np.array([M.confusion_counts(big, big)[:3], M.confusion_counts(empty, small)[:3]])
    per_image = M.dice_score(counts[:, 0], counts[:, 1], counts[:, 2])
    np.testing.assert_allclose(per_image, [1.0, 0.0])
    assert M.pooled_dice(counts[:, 0], counts[:, 1], counts[:, 2]) == pytest.approx(2 * 400 / (2 * 400 + 4))
    assert M.pooled_iou(counts[:, 0], counts[:, 1], counts[:, 2]) == pytest.approx(400 / 404)


def test_all_image_dice_and_false_mask_rate():
    # Two tumour images (Dice 1 and 0.5) and two healthy ones (empty prediction -> 1, a speck -> 0).
    tp, fp, fn = [10, 5, 0, 0], [0, 5, 0, 3], [0, 5, 0, 0]
    assert M.all_image_dice(tp, fp, fn) == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    rate, flagged, n = M.false_mask_rate([0, 5, 10, 50], min_area=10)
    assert (rate, flagged, n) == (0.5, 2, 4)
    assert M.false_mask_rate([0, 5, 10, 50], min_area=1)[1] == 3
    assert math.isnan(M.false_mask_rate([], 1)[0])


# ------------------------------------------------------------------------------------------- HD95


def test_hd95_offset_squares_matches_brute_force():
    pred = square((40, 40), 5, 5, 12)
    truth = square((40, 40), 9, 11, 12)
    assert M.hd95(pred, truth) == pytest.approx(brute_hd95(pred, truth), abs=1e-4)


@pytest.mark.parametrize("seed", range(8))
def test_hd95_matches_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(12, 30)), int(rng.integers(12, 30)))
    masks = []
    for _ in range(2):
        mask = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(1, 4))):  # a few rectangles, some touching the image edge
            r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            mask[r : r + rng.integers(1, 10), c : c + rng.integers(1, 10)] = True
        mask |= rng.random(shape) < 0.03  # isolated specks
        masks.append(mask)
    assert M.hd95(masks[0], masks[1]) == pytest.approx(brute_hd95(masks[0], masks[1]), abs=1e-4)
    # Hausdorff (100th percentile) against the same brute force: the crop must not cut any distance.
    a = np.array(sorted(brute_boundary(masks[0])), float)
    b = np.array(sorted(brute_boundary(masks[1])), float)
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    assert M.hd95(masks[0], masks[1], percentile=100) == pytest.approx(max(d.min(1).max(), d.min(0).max()), abs=1e-4)


def test_boundary_of_square_and_edge_touching_mask():
    sq = square((10, 10), 2, 2, 4)
    assert pixel_sets(M.mask_boundary(sq)) == brute_boundary(sq)
    assert len(brute_boundary(sq)) == 12
    edge = square((10, 10), 0, 0, 3)  # touches the top-left corner: the image edge counts as outside
    assert pixel_sets(M.mask_boundary(edge)) == brute_boundary(edge)
    assert (0, 1) in pixel_sets(M.mask_boundary(edge))


# ------------------------------------------------------------------------------------------- classification


def test_confusion_matrix_and_per_class_metrics():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    preds = np.array([0, 0, 1, 1, 3, 2, 3, 0])
    matrix = M.confusion_matrix(labels, preds, 4)
    expected = np.zeros((4, 4), dtype=int)
    for y, p in zip(labels, preds, strict=True):
        expected[y, p] += 1
    np.testing.assert_array_equal(matrix, expected)
    per_class = M.classification_summary(np.eye(4)[preds], labels, ["a", "b", "c", "d"])["per_class"]
    # class 0: predicted 3 times (2 right), 3 true (2 found)
    assert per_class["a"]["precision"] == pytest.approx(2 / 3) and per_class["a"]["recall"] == pytest.approx(2 / 3)
    # class 3: predicted twice (1 right), 2 true (1 found)
    assert per_class["d"]["precision"] == pytest.approx(1 / 2) and per_class["d"]["recall"] == pytest.approx(1 / 2)
    assert per_class["c"]["f1"] == 1.0
    with pytest.raises(ValueError, match="class indices"):
        M.confusion_matrix(labels, preds + 1, 4)


def test_classification_summary_known_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(4)[[0, 1, 1, 1, 2, 0]] * 0.7 + 0.075  # rows sum to 1; argmax = the chosen class
    summary = M.classification_summary(probs, labels, ["a", "b", "c", "d"])
    assert summary["accuracy"] == pytest.approx(4 / 6)
    # class d is absent from the truth and never predicted: macro averages over a, b, c only (torchmetrics leaves
    # out a class with tp + fp + fn = 0).
    f1 = {"a": 2 * 0.5 * 0.5 / 1.0, "b": 2 * (2 / 3) * 1 / (2 / 3 + 1), "c": 2 * 1 * 0.5 / 1.5}
    assert summary["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert summary["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert summary["per_class"]["d"]["support"] == 0
    assert summary["confusion_matrix"]["counts"][2] == [1, 0, 1, 0]
    assert M.macro_f1(labels, probs.argmax(1), 4) == pytest.approx(summary["macro_f1"])


def test_classification_summary_equals_the_logged_torchmetrics_collection():
    """The report's classification figures and the training loop's logged ones are the same computation."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(64, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 64)  # class 3 absent from the truth, but predicted now and then
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    summary = M.classification_summary(probs, labels, ["a", "b", "c", "d"])
    logged = classification_metrics(4)(torch.from_numpy(logits), torch.from_numpy(labels))
    for key, logged_key in (("accuracy", "acc"), ("macro_precision", "precision"), ("macro_recall", "recall")):
        assert summary[key] == pytest.approx(float(logged[logged_key]), abs=1e-6), key
    assert summary["macro_f1"] == pytest.approx(float(logged["f1"]), abs=1e-6)


def test_image_stats_counts_areas_and_hd95_per_image():
    truth = torch.zeros(3, 1, 8, 8)
    truth[0, 0, 2:4, 2:4] = 1  # 4 px tumour
    probs = torch.zeros(3, 1, 8, 8)
    probs[0, 0, 2:4, 2:5] = 0.9  # 6 px predicted: tp 4, fp 2
    probs[1, 0, 0, 0] = 0.9  # a speck on an image whose truth is empty
    probs[2, 0] = 0.9  # unknown truth: counted but no HD95
    stats = M.image_stats(probs, torch.eye(4)[:3], truth, torch.tensor([True, True, False]), threshold=0.5)
    assert stats.counts[0].tolist() == [4, 2, 0, 58]
    assert stats.counts[1].tolist() == [0, 1, 0, 63]
    assert stats.truth_area.tolist() == [4, 0, 0] and stats.pred_area.tolist() == [6, 1, 64]
    assert stats.hd95[0] == pytest.approx(M.hd95(probs[0, 0].numpy() > 0.5, truth[0, 0].numpy() > 0))
    assert math.isnan(stats.hd95[1]) and math.isnan(stats.hd95[2])  # one mask empty: undefined; unknown: not computed


def test_ece_known_cases():
    # 10 images at confidence 0.9, 7 correct: ECE = |0.7 - 0.9| = 0.2
    probs = np.tile([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3], (10, 1))
    labels = np.array([0] * 7 + [1] * 3)
    assert M.expected_calibration_error(probs, labels) == pytest.approx(0.2)
    # Two bins: 5 at 0.6 all correct (gap 0.4) and 5 at 0.95 with 3 correct (gap 0.35): 0.5*0.4 + 0.5*0.35
    low = np.array([0.6, 0.2, 0.1, 0.1])
    high = np.array([0.95, 0.03, 0.01, 0.01])
    probs = np.stack([low] * 5 + [high] * 5)
    labels = np.array([0] * 5 + [0, 0, 0, 1, 2])
    assert M.expected_calibration_error(probs, labels) == pytest.approx(0.375)
    # Perfect calibration inside one bin gives 0 even if confidence is low.
    probs = np.tile([0.5, 0.5, 0.0, 0.0], (4, 1))
    assert M.expected_calibration_error(probs, np.array([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-12)


def test_ece_matches_loop_over_bins():  # torchmetrics' bins: [b/15, (b+1)/15)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(300, 4)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 300)
    conf, pred = probs.max(1), probs.argmax(1)
    expected = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        in_bin = (conf >= lo) & (conf < hi)
        if in_bin.any():
            expected += in_bin.mean() * abs((pred[in_bin] == labels[in_bin]).mean() - conf[in_bin].mean())
    assert M.expected_calibration_error(probs, labels) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- groups and intervals


def test_size_terciles():
    areas = np.arange(1, 10, dtype=float)  # 1..9
    (q1, q2), group = S.size_terciles(areas)
    assert (q1, q2) == pytest.approx((np.quantile(areas, 1 / 3), np.quantile(areas, 2 / 3)))
    np.testing.assert_array_equal(group, [0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_summary_statistics_excludes_nan_and_counts_it():
    s = S.summary_statistics([1.0, 2.0, 6.0, float("nan")])
    assert s["mean"] == pytest.approx(3.0) and s["median"] == 2.0
    assert s["sd"] == pytest.approx(np.std([1, 2, 6], ddof=1))
    assert (s["n"], s["n_excluded"]) == (3, 1)


def test_bootstrap_contains_estimate_narrows_and_is_seeded():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 100, 500):
        values = rng.beta(5, 2, size=n)
        low, high = S.bootstrap_ci(lambda x: x.mean(axis=1), [values], n_resamples=1000, seed=0)
        assert low < values.mean() < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # Width of a mean's interval shrinks like 1/sqrt(n): 500 vs 20 images -> about 5 times narrower.
    assert 3 < widths[0] / widths[2] < 8
    values = rng.beta(5, 2, size=50)
    first = S.bootstrap_ci(lambda x: x.mean(axis=1), [values], seed=0)
    assert first == S.bootstrap_ci(lambda x: x.mean(axis=1), [values], seed=0)
    assert first != S.bootstrap_ci(lambda x: x.mean(axis=1), [values], seed=1)


def test_bootstrap_pooled_dice_resamples_images_together():
    rng = np.random.default_rng(1)
    tp = rng.integers(50, 100, 200)
    fp = rng.integers(0, 30, 200)
    fn = rng.integers(0, 30, 200)
    estimate = M.pooled_dice(tp, fp, fn)
    low, high = S.bootstrap_ci(lambda a, b, c: M.pooled_dice(a, b, c, axis=1), [tp, fp, fn], seed=0)
    assert low < estimate < high
    assert high - low < 0.05
    # A constant statistic has a zero-width interval; no images gives NaN.
    assert S.bootstrap_ci(lambda a: a.mean(axis=1), [np.ones(10)]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in S.bootstrap_ci(lambda a: a.mean(axis=1), [np.zeros(0)]))


def test_image_stats_of_a_batch_of_one():
    truth = torch.zeros(1, 1, 8, 8)
    truth[0, 0, :2, :2] = 1
    stats = M.image_stats(truth * 0.9, torch.eye(4)[:1], truth, torch.tensor([True]))
    assert stats.counts.tolist() == [[4, 0, 0, 60]] and stats.hd95.tolist() == [0.0]
