"""The paper's Avg, and the one rule for a run that lacks some of its ten benchmarks.

The m1 paper's Avg is the unweighted mean of the ten Table 1 columns.  Every average over tasks in the report
(Table 1, the paired comparisons, the budget and scoring tables, the leaderboard) is :func:`table1_average`:

- the unweighted mean of the Table 1 benchmarks the row has a value for, in the paper's column order;
- a row with all ten has the paper's Avg; a row with fewer has the mean over those, **marked** as partial
  (Table 1: ``*`` beside the row and a note; the other tables: ``Avg (k of 10)`` and an ``avg_benchmarks``
  column; the leaderboard: ``avg_table1_benchmarks``);
- a row with none of the ten has no Avg (other tasks, e.g. ``m1_demo``, never enter it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from m1_reports.columns import AVG, TABLE1_COLUMNS


@dataclass(frozen=True)
class Average:
    """An average over Table 1 benchmarks: its value (NaN when there is none) and the columns it covers."""

    value: float
    columns: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.columns)

    @property
    def exists(self) -> bool:
        return bool(self.columns)

    @property
    def partial(self) -> bool:
        """Over some but not all of the ten benchmarks."""
        return 0 < self.count < len(TABLE1_COLUMNS)


def table1_average(values: Mapping[str, float | None]) -> Average:
    """The average of ``values`` (Table 1 column -> accuracy; other keys are ignored) by the rule above.

    The mean is numpy's (``np.mean``, the arithmetic of pandas' ``Series.mean``), over the columns in the paper's
    order, so that every table shows the same bits for the same run.
    """
    columns = tuple(c for c in TABLE1_COLUMNS if not _missing(values.get(c)))
    if not columns:
        return Average(math.nan, ())
    return Average(float(np.mean([float(values[c]) for c in columns])), columns)  # type: ignore[arg-type]


def average_label(count: int | float | None) -> str:
    """``Avg``, or ``Avg (3 of 10)`` for an average over fewer than the ten benchmarks."""
    if count is None or (isinstance(count, float) and math.isnan(count)) or int(count) >= len(TABLE1_COLUMNS):
        return AVG
    return f"{AVG} ({int(count)} of {len(TABLE1_COLUMNS)})"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
