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
    """The benchmark's plain task of a known task in any variant (``m1_medqa_cot``, ``m1_medqa_k8``,
    ``m1_medqa_cot_k8`` -> ``m1_medqa``: :func:`m1_tasks.benchmarks.split_variant`); any other name unchanged."""
    base, _ = registry.split_variant(task)
    return base if base in _BY_TASK else task


def is_cot(task: str) -> bool:
    """A known task in the "+CoT" prompt variant (``m1_medqa_cot``, ``m1_medqa_cot_k8``)."""
    base, variant = registry.split_variant(task)
    return base in _BY_TASK and variant != registry.PLAIN


def repeats_of(task: str) -> int | None:
    """K of a known task's K-sample variant (``m1_medqa_k8``, ``m1_medqa_cot_k8`` -> 8), from its name
    (:func:`m1_tasks.benchmarks.split_repeats`); None for any other name."""
    return registry.split_repeats(task)[1] if base_task(task) in _BY_TASK else None


def variant_order(task: str) -> tuple[int, int]:
    """How far a known task is from its benchmark's plain task: (prompt variant, K), ``(0, 0)`` for the plain
    task; of several tasks of one benchmark in a run, the first in this order fills the benchmark's column."""
    _, variant = registry.split_variant(task)
    names = list(registry.VARIANTS)
    return (names.index(variant) if variant in names else len(names), repeats_of(task) or 0)


def benchmark(task: str) -> Column:
    """The benchmark of a task (a CoT or K-sample variant shares its column); unknown tasks get a column of their
    own.  The label names the CoT prompt (``MedQA (CoT)``), not K (the protocol states it)."""
    known = _BY_TASK.get(base_task(task))
    if known is None:
        return Column(task, task, task, None)
    if task != known.task:
        _, variant = registry.split_variant(task)
        return Column(task, known.column, known.label + registry.VARIANTS[variant].label_suffix, known.size)
    return known


def variant_label(task: str, label: str | None = None) -> str:
    """A task's label with its K named (``MedQA (8 samples)``, ``MedQA (CoT) (8 samples)``): a column of its own
    beside another variant of its benchmark, the question browser's task; ``label`` (default: the benchmark's)."""
    label = benchmark(task).label if label is None else label
    k = repeats_of(task)
    return f"{label} ({k} samples)" if k else label


def by_column(column: str) -> Column | None:
    return _BY_COLUMN.get(column)


def is_table1(task: str) -> bool:
    return base_task(task) in TABLE1_TASKS


def order_tasks(tasks: Iterable[str]) -> list[str]:
    """Table 1 tasks in the paper's order (each followed by its CoT variant, then their K-sample variants by K),
    then the known extras, then any other task alphabetically."""
    present = set(tasks)
    position = {task: i for i, task in enumerate((*TABLE1_TASKS, *(b.task for b in EXTRA)))}
    known = [t for t in present if base_task(t) in position]
    ordered = sorted(known, key=lambda t: (position[base_task(t)], repeats_of(t) or 0, variant_order(t), t))
    return ordered + sorted(present - set(ordered))


def order_columns(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The columns of (task, column) pairs, each once, in the order of their first task (:func:`order_tasks`); the
    Avg (:data:`AVG`) first.  A figure's panels: the tasks of one benchmark column (``m1_medqa``, ``m1_medqa_k8``
    in other runs) are one panel."""
    pairs = list(pairs)
    tasks = order_tasks({task for task, column in pairs if column != AVG})
    position = {task: i for i, task in enumerate(tasks)}
    first: dict[str, int] = {}
    for task, column in pairs:
        if column != AVG:
            first[column] = min(first.get(column, len(tasks)), position[task])
    ordered = sorted(first, key=lambda column: (first[column], column))
    return ([AVG] if any(column == AVG for _, column in pairs) else []) + ordered


def column_label(column: str, tasks: Iterable[str]) -> str:
    """The display name of a report column holding ``tasks``: their benchmark's label when they all share one
    (``MedQA (CoT)`` for CoT runs alone), else the registry column's; a column of its own (a variant beside its
    benchmark's task in one run, ``MedQA (8 samples)``, or an unknown task) is its own name."""
    if column == AVG:
        return AVG
    known = by_column(column)
    if known is None:
        return column
    labels = {benchmark(task).label for task in tasks}
    return labels.pop() if len(labels) == 1 else known.label
