"""The report's columns: the benchmarks of :mod:`m1_tasks.benchmarks` (the one registry: task names, Table 1
columns and their order, labels, paper counts) as the report shows them, plus any task a run has besides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from m1_tasks import benchmarks as registry


@dataclass(frozen=True)
class Column:
    """A column of the report: a registry benchmark (in one prompt variant), or any other task of a run."""

    task: str  # lm-eval task name
    column: str  # column name in paper_table1.csv and in table1.csv
    label: str  # display name
    size: int | None  # documents the paper evaluated (used for confidence intervals of published rows)


def _column(bench: registry.Benchmark) -> Column:
    return Column(bench.task, bench.column, bench.label, bench.paper_count)


TABLE1_COLUMN_INFO: tuple[Column, ...] = tuple(_column(b) for b in registry.TABLE1)
EXTRA: tuple[Column, ...] = tuple(_column(b) for b in registry.BENCHMARKS if not b.table1)
AVG = "Avg"

_BY_TASK = {b.task: b for b in TABLE1_COLUMN_INFO + EXTRA}
_BY_COLUMN = {b.column: b for b in TABLE1_COLUMN_INFO + EXTRA}
TABLE1_TASKS = tuple(b.task for b in TABLE1_COLUMN_INFO)
TABLE1_COLUMNS = tuple(b.column for b in TABLE1_COLUMN_INFO)

COT_SUFFIX = registry.COT_SUFFIX  # the paper's "+CoT" prompt variants of the tasks (m1_medqa_cot, ...)


def base_task(task: str) -> str:
    """``m1_medqa_cot`` -> ``m1_medqa`` (a known task's CoT variant); any other name unchanged."""
    base, _ = registry.split_variant(task)
    return base if base in _BY_TASK else task


def is_cot(task: str) -> bool:
    return base_task(task) != task


def benchmark(task: str) -> Column:
    """The benchmark of a task (a CoT variant shares its column); unknown tasks get a column of their own."""
    known = _BY_TASK.get(base_task(task))
    if known is None:
        return Column(task, task, task, None)
    if is_cot(task):
        _, variant = registry.split_variant(task)
        return Column(task, known.column, known.label + registry.VARIANTS[variant].label_suffix, known.size)
    return known


def by_column(column: str) -> Column | None:
    return _BY_COLUMN.get(column)


def is_table1(task: str) -> bool:
    return base_task(task) in TABLE1_TASKS


def order_tasks(tasks: Iterable[str]) -> list[str]:
    """Table 1 tasks in the paper's order (each followed by its CoT variant), then the known extras, then any
    other task alphabetically."""
    present = set(tasks)
    ordered = []
    for task in (*TABLE1_TASKS, *(b.task for b in EXTRA)):
        ordered += [t for t in (task, task + COT_SUFFIX) if t in present]
    ordered += sorted(present - set(ordered))
    return ordered
