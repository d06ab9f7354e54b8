"""Statistics of the evaluation report: summaries of per-image values, size terciles, bootstrap intervals.

Small NumPy functions, each checked against a hand computation in the tests; the metrics themselves are in
:mod:`brain_mtl.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "size_terciles", "summary_statistics"]


def summary_statistics(values) -> dict[str, float | int]:
    """Mean, sample sd (ddof=1), median, min and max of the finite values, and how many there were.

    NaN values (e.g. undefined HD95) are left out; ``n`` counts the values used and ``n_excluded`` the NaNs.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    nan = float("nan")
    return {
        "mean": float(finite.mean()) if n else nan,
        "sd": float(finite.std(ddof=1)) if n > 1 else nan,
        "median": float(np.median(finite)) if n else nan,
        "min": float(finite.min()) if n else nan,
        "max": float(finite.max()) if n else nan,
        "n": n,
        "n_excluded": int(values.size - n),
    }


def size_terciles(areas) -> tuple[tuple[float, float], np.ndarray]:
    """Split images into three groups by tumour size.

    Args:
        areas: (N,) ground-truth tumour areas (pixels or share of the image).

    Returns:
        ``((q1, q2), group)``: the 1/3 and 2/3 quantiles (linear interpolation) and an (N,) int array with
        0 = small (area <= q1), 1 = medium (q1 < area <= q2), 2 = large (area > q2). Ties make groups unequal.
    """
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if areas.size == 0:
        return (float("nan"), float("nan")), np.zeros(0, dtype=np.int64)
    q1, q2 = np.quantile(areas, [1 / 3, 2 / 3])
    group = np.where(areas <= q1, 0, np.where(areas <= q2, 1, 2)).astype(np.int64)
    return (float(q1), float(q2)), group


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    arrays: Sequence[np.ndarray],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic, resampling images with replacement.

    Args:
        statistic: called with each array resampled along axis 0 and stacked into shape (R, N, ...); it must reduce
            the image axis (axis 1) and return one value per resample, shape (R,). E.g.
            ``lambda x: x.mean(axis=1)`` or ``lambda tp, fp, fn: pooled_dice(tp, fp, fn, axis=1)``.
        arrays: per-image arrays with the same length N along axis 0 (resampled with the same indices).
        n_resamples: R, number of bootstrap resamples.
        seed: seed of the NumPy generator (same seed, same interval).
        confidence: 0.95 gives the 2.5th and 97.5th percentiles.

    Returns:
        (low, high); NaN when N = 0 or ``n_resamples`` = 0. Resamples whose statistic is NaN are ignored.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0] if arrays else 0
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("all arrays must have the same number of images")
    if n == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # Resample in chunks so that R x N index arrays stay a few MB even for large test sets.
    chunk = max(1, min(n_resamples, 2_000_000 // n))
    stats = []
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(size, n))
        stats.append(np.asarray(statistic(*(a[idx] for a in arrays)), dtype=np.float64).reshape(size))
        done += size
    values = np.concatenate(stats)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.nanpercentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)
