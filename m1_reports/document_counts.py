"""Document counts against the paper's: which (run, task) cells were scored on other documents than Table 1.

For every run and m1 task, the number of documents scored (the results file's ``sample_len``, else
``n-samples.effective``) is compared with the paper's count for the task's source
(:data:`m1_tasks.data.EXPECTED_COUNTS`, through :mod:`m1_reports.suite`).  A difference (``--limit``, a partial
data file, a benchmark not evaluated) is a :class:`CountNote`: logged once per run as a WARNING, marked ``‡``
beside the cell in Table 1 and listed in the report's header.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from m1_reports.columns import TABLE1_COLUMN_INFO, benchmark, is_table1
from m1_reports.read_results import RunInfo
from m1_reports.suite import paper_count
from m1_tasks.benchmarks import split_variant

logger = logging.getLogger(__name__)

COUNT_MARK = "‡"  # "†" marks the published rows
# The group whose members a run meant to evaluate, in any variant (m1_table1_cot, m1_table1_k8, ...): a member
# missing from the results is a count note (n = 0).
TABLE1_GROUP = "m1_table1"


@dataclass(frozen=True)
class CountNote:
    """One run's task scored on a different number of documents than the paper's."""

    run: str
    task: str
    column: str  # Table 1 column (or the task's own column)
    label: str  # the column's display label
    n: int  # documents scored (0: not evaluated)
    paper: int  # documents in the paper's evaluation
    original: int | None  # documents the task had before --limit (n-samples "original")
    limit: object = None  # the run's --limit

    @property
    def missing(self) -> bool:
        return self.n == 0

    @property
    def reason(self) -> str:
        if self.missing:
            return "not evaluated"
        if self.limit not in (None, "", 0) and (self.original is None or self.n < self.original):
            return f"--limit {self.limit}"
        if self.original is not None and self.original != self.paper:
            return f"the data file has {self.original}"
        return ""

    @property
    def text(self) -> str:
        """``n=100 of the paper's 1273 (--limit 100)``."""
        reason = self.reason
        return f"n={self.n} of the paper's {self.paper}" + (f" ({reason})" if reason else "")

    @property
    def line(self) -> str:
        return f"{self.label}: {self.text}"


def count_notes(runs: list[RunInfo], columns: dict[tuple[str, str], str] | None = None) -> list[CountNote]:
    """The count differences of every run, in run order and task order.

    ``columns`` maps (run label, task) to the Table 1 column the task fills (a CoT variant beside its base task
    gets a column of its own); tasks not in it use their benchmark's column.  A Table 1 benchmark a run meant to
    evaluate (a member of its ``m1_table1`` group) but has no result for is a note with ``n = 0``.
    """
    columns = columns or {}
    notes: list[CountNote] = []
    for run in runs:
        seen: set[str] = set()
        for task, result in run.tasks.items():
            paper = paper_count(task, result)
            bench = benchmark(task)
            seen.add(bench.column)
            if paper is None or result.n is None or result.n == paper:
                continue
            column = columns.get((run.label, task), bench.column)
            label = bench.label if column == bench.column else column
            notes.append(CountNote(run.label, task, column, label, result.n, paper, result.n_original, run.limit))
        meant = {t for group, members in run.groups.items() if split_variant(group)[0] == TABLE1_GROUP
                 for t in members}  # fmt: skip
        for task in meant:
            bench = benchmark(task)
            paper = paper_count(task)
            if is_table1(task) and bench.column not in seen and paper is not None:
                notes.append(CountNote(run.label, task, bench.column, bench.label, 0, paper, None, run.limit))
    order = {b.column: i for i, b in enumerate(TABLE1_COLUMN_INFO)}
    run_order = {run.label: i for i, run in enumerate(runs)}
    notes.sort(key=lambda note: (run_order[note.run], order.get(note.column, len(order)), note.column))
    return notes


def log_count_notes(notes: list[CountNote]) -> None:
    """One WARNING per run naming every task whose document count differs from the paper's, with both numbers."""
    by_run: dict[str, list[CountNote]] = {}
    for note in notes:
        by_run.setdefault(note.run, []).append(note)
    for run, run_notes in by_run.items():
        logger.warning(
            "%s: document counts differ from the paper's: %s", run, "; ".join(note.line for note in run_notes)
        )
