"""Paired bootstrap over test rows: confidence intervals for each run's metrics and a test against the best run.

Written here rather than taken from `scipy.stats.bootstrap`: a comparison needs the *same* resampled rows for every
run (so differences are paired), several metrics per resample, and a p-value for a difference; scipy draws its
resamples per call and returns intervals only.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 2000  # resamples per comparison; Efron & Tibshirani advise at least 1000 for percentile intervals
LEVEL = 0.95
SEED = 0  # fixed: rebuilding a comparison gives the same intervals


def resample_index(n_rows: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Row indices of `resamples` bootstrap resamples (with replacement) of `n_rows` rows: (resamples, n_rows)."""
    if n_rows < 1:
        raise ValueError("a bootstrap needs at least one row")
    return np.random.default_rng(seed).integers(0, n_rows, size=(resamples, n_rows))


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval holding `level` of the resampled values (NaN resamples ignored)."""
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value that a paired difference is zero, from its resampled values.

    The share of resamples on the far side of zero, doubled; (k + 1) / (B + 1) keeps it above zero, as a finite
    number of resamples cannot show a probability of exactly 0 (Davison & Hinkley 1997, eq. 4.11).
    """
    finite = differences[np.isfinite(differences)]
    if not len(finite):
        return float("nan")
    below = (np.sum(finite <= 0) + 1) / (len(finite) + 1)
    above = (np.sum(finite >= 0) + 1) / (len(finite) + 1)
    return float(min(1.0, 2 * min(below, above)))
