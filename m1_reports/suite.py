"""What the report takes from the m1 task suite itself (``m1_tasks``): which tasks are m1 tasks, their source
keys, the paper's document counts, and the scorer version of a run.

Nothing here is copied: the counts are :data:`m1_tasks.data.EXPECTED_COUNTS`, the task -> source map is
:data:`m1_tasks.data.TASK_SOURCES` (a ``*_cot`` task reads its base task's source).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from m1_reports.read_results import TaskResult
from m1_tasks.benchmarks import EXPECTED_COUNTS
from m1_tasks.benchmarks import source_of as registry_source
from m1_tasks.scoring import MARKER_SCORED_SINCE


def source_of(task: str, result: TaskResult | None = None) -> str | None:
    """The task's source key in ``m1_eval_data.json`` (``dataset_kwargs.m1_source`` of its config, else the
    suite's own map); None for a task that is not an m1 task."""
    if result is not None:
        kwargs = result.config.get("dataset_kwargs")
        if isinstance(kwargs, Mapping) and kwargs.get("m1_source"):
            return str(kwargs["m1_source"])
    return registry_source(task)


def is_m1_task(task: str, result: TaskResult | None = None) -> bool:
    return source_of(task, result) is not None


def paper_count(task: str, result: TaskResult | None = None) -> int | None:
    """The number of documents the paper evaluated for this task (None: not a paper benchmark)."""
    source = source_of(task, result)
    return EXPECTED_COUNTS.get(source) if source is not None else None


def version_number(value: Any) -> float | None:
    """``versions[task]`` as a number (lm-eval writes the YAML's ``metadata.version``: 2.0, "2.0", "Yaml"...)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def scores_with_marker(version: float | None) -> bool:
    """Whether a run of this task version was scored with the answer marker included (m1's exact rule)."""
    return version is not None and version >= MARKER_SCORED_SINCE
