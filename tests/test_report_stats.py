"""Confidence intervals and the paired comparison, against hand computations."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m1_reports import ReportOptions, build_report
from m1_reports.stats import mcnemar_exact, mean_of_proportions, paired_comparison, wilson_interval
from tests.report_fixtures import TaskTruth, write_run


def test_wilson_textbook_value():
    low, high = wilson_interval(0.5, 20)  # 10 of 20
    assert low == pytest.approx(0.2993, abs=1e-4) and high == pytest.approx(0.7007, abs=1e-4)
    assert wilson_interval(0.0, 10)[0] == pytest.approx(0.0) and wilson_interval(1.0, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson_interval(0.5, 0))


def test_mean_of_proportions():
    mean, low, high = mean_of_proportions([0.5, 0.7], [100, 50])
    se = math.sqrt(0.25 / 100 + 0.21 / 50) / 2
    assert mean == pytest.approx(0.6)
    assert low == pytest.approx(0.6 - 1.959963984540054 * se) and high == pytest.approx(0.6 + 1.959963984540054 * se)


def test_mcnemar_exact_by_hand():
    # b = 3, c = 10 discordant pairs: p = 2 * P(X <= 3), X ~ Bin(13, 1/2)
    assert mcnemar_exact(3, 10) == pytest.approx(2 * sum(comb(13, k) for k in range(4)) / 2**13)
    assert mcnemar_exact(10, 3) == pytest.approx(0.09228515625)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0


def _scores(both: int, a_only: int, b_only: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return np.array(a, float), np.array(b, float)


def test_paired_comparison_by_hand():
    a, b = _scores(both=8, a_only=5, b_only=1, neither=6)
    result, replicates = paired_comparison(a, b, n_boot=20_000, rng=np.random.default_rng(1))
    assert (result.n, result.both, result.a_only, result.b_only, result.neither) == (20, 8, 5, 1, 6)
    assert result.acc_a == pytest.approx(13 / 20) and result.acc_b == pytest.approx(9 / 20)
    assert result.diff == pytest.approx(0.2)
    assert result.p_value == pytest.approx(2 * (1 + 6) / 64)  # 2 * P(X <= 1), X ~ Bin(6, 1/2)
    # The bootstrap of the mean difference: d takes +1 (5 docs), -1 (1), 0 (14). Its variance is
    # (E[d^2] - E[d]^2) / n = (6/20 - 0.04) / 20, so the percentile interval is close to diff +- 1.96 sd.
    sd = math.sqrt((6 / 20 - 0.2**2) / 20)
    assert replicates.mean() == pytest.approx(0.2, abs=0.005)
    assert replicates.std() == pytest.approx(sd, rel=0.03)
    assert result.ci_low == pytest.approx(0.2 - 1.96 * sd, abs=0.03)
    assert result.ci_high == pytest.approx(0.2 + 1.96 * sd, abs=0.03)


def test_bootstrap_matches_index_resampling():
    """The multinomial shortcut equals resampling documents with replacement (same distribution)."""
    a, b = _scores(both=30, a_only=12, b_only=5, neither=13)
    _, fast = paired_comparison(a, b, n_boot=20_000, rng=np.random.default_rng(2))
    rng = np.random.default_rng(3)
    index = rng.integers(0, len(a), size=(20_000, len(a)))
    slow = (a[index] - b[index]).mean(axis=1)
    assert np.percentile(fast, [2.5, 50, 97.5]) == pytest.approx(np.percentile(slow, [2.5, 50, 97.5]), abs=0.012)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_paired_counts_add_up(pairs):
    a = np.array([p[0] for p in pairs], float)
    b = np.array([p[1] for p in pairs], float)
    result, _ = paired_comparison(a, b, n_boot=200, rng=np.random.default_rng(0))
    assert result.both + result.a_only + result.b_only + result.neither == len(pairs)
    assert result.diff == pytest.approx((result.a_only - result.b_only) / len(pairs))
    assert result.ci_low <= result.diff + 1e-12 or result.a_only + result.b_only == 0
    assert 0.0 <= result.p_value <= 1.0


def test_paired_table_in_a_report(tmp_path):
    """Two runs on the same documents: the report's paired row equals the hand computation."""
    a_scores, b_scores = _scores(both=8, a_only=5, b_only=1, neither=6)
    zeros = [0] * 20
    run_a = {"m1_medqa": TaskTruth([int(x) for x in a_scores], [int(x) for x in a_scores], zeros)}
    run_b = {"m1_medqa": TaskTruth([int(x) for x in b_scores], [int(x) for x in b_scores], zeros)}
    write_run(tmp_path / "a", run_a, model="org/a", records=False)
    write_run(tmp_path / "b", run_b, model="org/b", records=False)
    report = build_report([tmp_path / "a", tmp_path / "b"], ReportOptions(references=["none"], n_boot=5000))
    row = report.paired[report.paired["task"] == "m1_medqa"].iloc[0]
    assert (row["run_a"], row["run_b"]) == ("b", "a")  # the later run against the first
    assert row["diff"] == pytest.approx(-0.2)
    assert (row["a_only"], row["b_only"]) == (1, 5)
    assert row["p_mcnemar"] == pytest.approx(14 / 64)
    assert row["ci_low"] < -0.2 < row["ci_high"]
    # same seed, same numbers
    again = build_report([tmp_path / "a", tmp_path / "b"], ReportOptions(references=["none"], n_boot=5000))
    assert again.paired.equals(report.paired)
    avg = report.paired[report.paired["task"] == "Avg"]
    assert avg.empty or avg.iloc[0]["diff"] == pytest.approx(-0.2)
