"""Confidence intervals and paired tests for accuracies (fractions in 0..1)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
DEFAULT_BOOTSTRAP = 10_000


def wilson_interval(p: float, n: float | None, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` samples (NaN when unknown)."""
    if n is None or not n or n <= 0 or p is None or math.isnan(p) or not 0.0 <= p <= 1.0:
        return math.nan, math.nan
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def normal_interval(value: float, stderr: float, z: float = Z95) -> tuple[float, float]:
    if math.isnan(value) or math.isnan(stderr):
        return math.nan, math.nan
    return value - z * stderr, value + z * stderr


def mean_of_proportions(ps: Sequence[float], ns: Sequence[float | None], z: float = Z95) -> tuple[float, float, float]:
    """Unweighted mean of independent proportions (the paper's Avg) with a normal 95 % interval.

    Returns (mean, low, high); the interval is NaN when any ``n`` is unknown.
    """
    values = [p for p in ps if p is not None and not math.isnan(p)]
    if not values or len(values) != len(ps):
        return math.nan, math.nan, math.nan
    mean = float(np.mean(values))  # numpy's arithmetic, as pandas' mean in the other tables
    if any(n is None or not n or (isinstance(n, float) and math.isnan(n)) for n in ns):
        return mean, math.nan, math.nan
    variance = sum(p * (1 - p) / n for p, n in zip(ps, ns, strict=True)) / len(values) ** 2
    low, high = normal_interval(mean, math.sqrt(variance), z)
    return mean, low, high


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact (binomial) two-sided McNemar p-value from the discordant counts; 1.0 when there are none."""
    discordant = int(a_only) + int(b_only)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(a_only), discordant, 0.5, alternative="two-sided").pvalue)


def stable_seed(seed: int, *keys: str) -> list[int]:
    """A seed for numpy that depends on ``seed`` and names only (not on the order comparisons are made in)."""
    return [int(seed), *(zlib.crc32(key.encode("utf-8")) for key in keys)]


def bootstrap_differences(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``mean(a) - mean(b)``, resampling the paired documents.

    For 0/1 scores the documents fall into three kinds (a right only, b right only, tie), so resampling
    ``n`` documents is one multinomial draw of the three counts: exact, and fast for any ``n``.
    """
    n = len(a)
    if n == 0:
        return np.full(n_boot, np.nan)
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if np.isin(d, (-1.0, 0.0, 1.0)).all():
        counts = np.array([(d == 1).sum(), (d == -1).sum(), (d == 0).sum()], dtype=float)
        draws = rng.multinomial(n, counts / n, size=n_boot)
        return (draws[:, 0] - draws[:, 1]) / n
    replicates = np.empty(n_boot)
    chunk = max(1, 5_000_000 // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        replicates[start : start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    return replicates


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if replicates.size == 0 or np.isnan(replicates).all():
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Paired:
    """Two runs scored on the same documents."""

    n: int
    acc_a: float
    acc_b: float
    diff: float  # acc_a - acc_b
    ci_low: float
    ci_high: float
    a_only: int  # documents a got right and b wrong
    b_only: int
    both: int
    neither: int
    p_value: float  # exact McNemar (NaN when scores are not 0/1)


def paired_comparison(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = DEFAULT_BOOTSTRAP, rng: np.random.Generator
) -> tuple[Paired, np.ndarray]:
    """The paired comparison of two score vectors (same documents, same order) and its bootstrap replicates."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n = len(a)
    if n == 0:
        nan = math.nan
        return Paired(0, nan, nan, nan, nan, nan, 0, 0, 0, 0, nan), np.full(n_boot, np.nan)
    binary = bool(np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all())
    a_right, b_right = a == 1.0, b == 1.0
    a_only = int((a_right & ~b_right).sum())
    b_only = int((b_right & ~a_right).sum())
    replicates = bootstrap_differences(a, b, n_boot, rng)
    low, high = percentile_interval(replicates)
    return (
        Paired(
            n=n,
            acc_a=float(a.mean()),
            acc_b=float(b.mean()),
            diff=float(a.mean() - b.mean()),
            ci_low=low,
            ci_high=high,
            a_only=a_only,
            b_only=b_only,
            both=int((a_right & b_right).sum()),
            neither=int((~a_right & ~b_right).sum()),
            p_value=mcnemar_exact(a_only, b_only) if binary else math.nan,
        ),
        replicates,
    )
