"""The benchmarks: lm-eval task names, the paper's Table 1 columns, their order and sizes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    task: str  # lm-eval task name
    column: str  # column name in paper_table1.csv and in table1.csv
    label: str  # display name
    size: int | None  # documents in the full benchmark (used for confidence intervals of published rows)


TABLE1: tuple[Benchmark, ...] = (
    Benchmark("m1_medmcqa", "MedMCQA", "MedMCQA", 4183),
    Benchmark("m1_medqa", "MedQA", "MedQA", 1273),
    Benchmark("m1_pubmedqa", "PubMedQA", "PubMedQA", 1000),
    Benchmark("m1_mmlu_pro_med", "MMLU-Pro", "MMLU-Pro", 1535),
    Benchmark("m1_gpqa_med", "GPQA", "GPQA", 390),
    Benchmark("m1_lancet", "Lancet", "Lancet", 412),
    Benchmark("m1_medbullets_op4", "MedBullets_op4", "MedBullets op4", 308),
    Benchmark("m1_medbullets_op5", "MedBullets_op5", "MedBullets op5", 308),
    Benchmark("m1_medxpertqa", "MedXpertQA", "MedXpertQA", 1449),
    Benchmark("m1_nejm", "NEJM", "NEJM", 603),
)
EXTRA: tuple[Benchmark, ...] = (
    Benchmark("m1_hle", "HLE", "HLE", 102),
    Benchmark("m1_demo", "demo", "demo", None),
)
AVG = "Avg"
GROUPS = frozenset({"m1_table1", "m1_huatuo", "m1_hard"})

_BY_TASK = {b.task: b for b in TABLE1 + EXTRA}
_BY_COLUMN = {b.column: b for b in TABLE1 + EXTRA}
TABLE1_TASKS = tuple(b.task for b in TABLE1)
TABLE1_COLUMNS = tuple(b.column for b in TABLE1)


COT_SUFFIX = "_cot"  # the paper's "+CoT" prompt variants of the tasks (m1_medqa_cot, ...)


def base_task(task: str) -> str:
    """``m1_medqa_cot`` -> ``m1_medqa`` (a known task's CoT variant); any other name unchanged."""
    if task.endswith(COT_SUFFIX) and task[: -len(COT_SUFFIX)] in _BY_TASK:
        return task[: -len(COT_SUFFIX)]
    return task


def is_cot(task: str) -> bool:
    return base_task(task) != task


def benchmark(task: str) -> Benchmark:
    """The benchmark of a task (a CoT variant shares its column); unknown tasks get a column of their own."""
    known = _BY_TASK.get(base_task(task))
    if known is None:
        return Benchmark(task, task, task, None)
    if is_cot(task):
        return Benchmark(task, known.column, f"{known.label} (CoT)", known.size)
    return known


def by_column(column: str) -> Benchmark | None:
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
