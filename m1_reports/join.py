"""The join: every run read (:mod:`m1_reports.read_results`, :mod:`m1_reports.read_streams`) into tidy pandas frames,
one row per run, per (run, task) and per (run, task, sample), and the check that the runs scored the same documents.

:func:`load` is the one entry: results files first (labels, the output check), then every samples file with its
generation records in one pass (each document's question kept on the way), then the rows of the questions
the browser shows with their texts, read again (:mod:`m1_reports.kept_samples`).
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from m1_base.errors import ReportInputError, located
from m1_reports.columns import TABLE1_COLUMNS, base_task, benchmark, order_tasks, variant_label, variant_order
from m1_reports.kept_samples import (
    BrowserSample,
    Question,
    attach_verdicts,
    choose_questions,
    question_noter,
    read_kept,
)
from m1_reports.naming import budget_of, format_gen_kwargs, ignore_of, run_labels, short_model_name
from m1_reports.read_results import RunInfo, discover_runs, read_results
from m1_reports.read_streams import (
    RECORD_COLUMNS,
    TOTAL_COLUMNS,
    SampleColumns,
    SampleFileSummary,
    read_generations,
    read_samples,
)

logger = logging.getLogger(__name__)

MAX_PROBLEMS_PER_FILE = 3


class ProgressSink(Protocol):
    """Where reading reports its progress (the CLI shows a rich progress bar)."""

    def start(self, total_bytes: int) -> None: ...

    def advance(self, n_bytes: int) -> None: ...

    def finish(self) -> None: ...


@dataclass
class LoadOptions:
    labels: Sequence[str] | None = None  # one per run, in discovery order
    browser_limit: int = 50  # questions per task shown with every run's texts in the question browser (0 = none)
    allow_mismatch: bool = False  # runs that evaluated different documents: warn instead of failing
    allow_other_versions: bool = False
    # Called with the runs (results files read, labels given) before any samples file is read: the report's
    # check of its output folder (m1_reports.write_folder.check_output), so that a refusal comes before the long part.
    check_runs: Callable[[list[RunInfo]], None] | None = None


@dataclass
class Loaded:
    runs: list[RunInfo]
    runs_frame: pd.DataFrame  # one row per run
    run_tasks: pd.DataFrame  # one row per (run, task)
    samples: pd.DataFrame  # one row per (run, task, sample)
    browser: list[BrowserSample] = field(default_factory=list)  # every run's sample of the questions shown with texts
    questions: dict[str, dict[Any, Question]] = field(default_factory=dict)  # task -> doc_id -> question (browser)
    sample_files: list[SampleFileSummary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [run.label for run in self.runs]

    @property
    def tasks(self) -> list[str]:
        return order_tasks(self.run_tasks["task"].unique()) if len(self.run_tasks) else []


def _raise_all(errors: list[ReportInputError]) -> None:
    """Raise the first error (file and line kept), carrying every other problem in its ``more``."""
    if not errors:
        return
    first = errors[0]
    if len(errors) > 1:
        more = list(first.more)
        for error in errors[1:]:
            more.extend(error.lines())
        raise ReportInputError(first.message, path=first.path, line=first.line, hint=first.hint, more=more)
    raise first


def _file_size(path: Path) -> int | None:
    """The size of a file, None when there is none; an OSError (no permission) as a ReportInputError."""
    try:
        return path.stat().st_size if path.exists() else None
    except OSError as error:
        raise ReportInputError.from_os_error(error) from error


def load(
    paths: Iterable[Path | str], options: LoadOptions | None = None, progress: ProgressSink | None = None
) -> Loaded:
    """Read every run under ``paths`` into frames (see :class:`Loaded`); bad input raises ReportInputError."""
    options = options or LoadOptions()
    files = discover_runs(paths)
    runs: list[RunInfo] = []
    problems: list[ReportInputError] = []
    for run_files in files:
        try:
            runs.append(read_results(run_files, allow_other_versions=options.allow_other_versions))
        except ReportInputError as error:
            problems.append(error)
    _raise_all(problems)
    for run, label in zip(runs, run_labels(runs, options.labels), strict=True):
        run.label = label
    if options.check_runs is not None:
        options.check_runs(runs)

    warnings: list[str] = []
    plan: list[tuple[int, RunInfo, str]] = []
    total = 0
    for index, run in enumerate(runs):
        if not run.tasks:
            warnings.append(located(run.path, None, "no task results in this file"))
        for task in run.tasks:
            samples = run.files.samples_path(task)
            size = _file_size(samples)
            if size is not None:
                plan.append((index, run, task))
                total += size + (_file_size(run.files.generations_path(task)) or 0)
            else:
                warnings.append(
                    located(
                        samples,
                        None,
                        f"missing: {task} of {run.label!r} is shown from its results only "
                        "(run lm_eval with --log_samples for paired comparisons and the sample browser)",
                    )
                )

    warnings.extend(_missing_records(plan))

    columns = SampleColumns()
    questions: dict[str, dict[Any, Question]] = {}
    summaries: list[SampleFileSummary] = []
    if progress is not None:
        progress.start(total)
    advance = progress.advance if progress is not None else None
    try:
        for index, run, task in plan:
            result = run.tasks[task]
            try:
                generations_path = run.files.generations_path(task)
                records = read_generations(generations_path, advance) if generations_path.exists() else None
                summary = read_samples(
                    run.files.samples_path(task),
                    run=index,
                    task=task,
                    filter_name=result.filter,
                    metric=result.metric,
                    columns=columns,
                    records=records,
                    note=question_noter(questions.setdefault(task, {})) if options.browser_limit > 0 else None,
                    progress=advance,
                )
            except ReportInputError as error:
                problems.append(error)
                continue
            summaries.append(summary)
            if records is not None and summary.matched_records < summary.rows:
                warnings.append(
                    located(
                        generations_path,
                        None,
                        f"{summary.rows - summary.matched_records} of {summary.rows} samples have no generation "
                        "record (their token columns are empty)",
                    )
                )
    finally:
        if progress is not None:
            progress.finish()
    _raise_all(problems)

    samples = _samples_frame(columns, runs)
    del columns
    mismatch = check_documents(samples, runs)
    if mismatch:
        if not options.allow_mismatch:
            raise ReportInputError(
                mismatch[0],
                more=mismatch[1:],
                hint="compare runs over the same documents (same tasks, same --limit), or pass --allow-mismatch "
                "to report each run on its own documents and pair only the common ones",
            )
        warnings.extend(mismatch)
    browser = read_kept(runs, samples, choose_questions(samples, options.browser_limit))
    attach_verdicts(browser, runs)
    run_tasks = _run_tasks_frame(runs, samples, warnings)
    for warning in warnings:
        logger.warning("%s", warning)
    return Loaded(
        runs=runs,
        runs_frame=_runs_frame(runs),
        run_tasks=run_tasks,
        samples=samples,
        browser=browser,
        questions=questions,
        sample_files=summaries,
        warnings=warnings,
    )


def _missing_records(plan: list[tuple[int, RunInfo, str]]) -> list[str]:
    """One warning per run whose samples files have no generation records beside them (a run of a model other
    than the m1 models', or records removed): which file is missing and which columns are blank because of it."""
    missing: dict[int, list[tuple[str, Path]]] = {}
    for index, run, task in plan:
        path = run.files.generations_path(task)
        if not path.exists():
            missing.setdefault(index, []).append((task, path))
    warnings = []
    for index, absent in missing.items():
        run = next(run for i, run, _ in plan if i == index)
        tasks = [task for task, _ in absent]
        others = f" (and {len(absent) - 1} more of this run's)" if len(absent) > 1 else ""
        warnings.append(
            located(
                absent[0][1],
                None,
                f"missing{others}: the token columns (thinking and answer tokens, budget hits, ignore rounds) of "
                f"{run.label!r} are blank for {', '.join(tasks)} (only the m1 models write generation records)",
            )
        )
    return warnings


# ------------------------------------------------------------------------------------------------ frames


def _samples_frame(columns: SampleColumns, runs: list[RunInfo]) -> pd.DataFrame:
    n = len(columns.doc_id)
    labels = [run.label for run in runs]
    tasks = order_tasks(columns.task_names)
    remap = np.array([tasks.index(name) for name in columns.task_names] or [0], dtype=np.int32)

    def numbers(values: array, dtype: Any) -> np.ndarray:
        return np.frombuffer(values, dtype=dtype).copy() if len(values) else np.empty(0, dtype=dtype)

    task_codes = remap[numbers(columns.task, np.int32)] if n else np.empty(0, dtype=np.int32)
    frame = pd.DataFrame(
        {
            "run": pd.Categorical.from_codes(numbers(columns.run, np.int32), categories=labels),
            "task": pd.Categorical.from_codes(task_codes, categories=tasks),
            "doc_id": columns.doc_id,
            "line": numbers(columns.line, np.int64),
            "offset": numbers(columns.offset, np.int64),
            "acc": numbers(columns.acc, np.float64),
            "acc_strict": numbers(columns.acc_strict, np.float64),
            "no_answer": numbers(columns.no_answer, np.float64),
            "doc_hash": pd.Series(columns.doc_hash, dtype=object),
        }
    )
    records = columns.record_values()
    for position, name in enumerate(RECORD_COLUMNS):
        frame[name] = records[:, position]
    totals = columns.total_values()
    for position, name in enumerate(TOTAL_COLUMNS):
        frame[name] = totals[:, position]
    return frame


def group_positions(samples: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Row positions of every (run, task) in the samples frame (file order)."""
    if samples.empty:
        return {}
    groups = samples.groupby(["run", "task"], observed=True, sort=False).indices
    return {(str(run), str(task)): positions for (run, task), positions in groups.items()}


def check_documents(samples: pd.DataFrame, runs: list[RunInfo]) -> list[str]:
    """Problems (``file:line: ...``) where runs evaluated different documents of the same task.

    Every run is compared with the first run that has the task: same doc ids, and the same ``doc_hash``
    for each doc id (when both files record one).
    """
    problems: list[str] = []
    if samples.empty:
        return problems
    by_label = {run.label: run for run in runs}
    doc_ids = samples["doc_id"].to_numpy()
    hashes = samples["doc_hash"].to_numpy()
    lines = samples["line"].to_numpy()
    per_task: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (label, task), positions in group_positions(samples).items():
        per_task.setdefault(task, []).append((label, positions))
    order = {run.label: i for i, run in enumerate(runs)}
    for task, members in per_task.items():
        members.sort(key=lambda member: order[member[0]])
        ref_label, ref_pos = members[0]
        ref_path = by_label[ref_label].files.samples_path(task)
        for label, pos in members[1:]:
            if len(pos) == len(ref_pos) and np.array_equal(doc_ids[pos], doc_ids[ref_pos]):
                same = hashes[pos] == hashes[ref_pos]
                if same.all():
                    continue  # the common case: same documents in the same order
            path = by_label[label].files.samples_path(task)
            ref = {doc_ids[i]: (hashes[i], lines[i]) for i in ref_pos}
            found: list[str] = []
            seen = set()
            for i in pos:
                doc_id = doc_ids[i]
                seen.add(doc_id)
                expected = ref.get(doc_id)
                if expected is None:
                    found.append(
                        located(
                            path, int(lines[i]), f"doc_id {doc_id} of {task} was not evaluated by run {ref_label!r}"
                        )
                    )
                elif expected[0] and hashes[i] and expected[0] != hashes[i]:
                    found.append(
                        located(
                            path,
                            int(lines[i]),
                            f"doc_id {doc_id} of {task} is a different document than in run {ref_label!r} "
                            f"({ref_path}:{int(expected[1])}): doc_hash differs",
                        )
                    )
            for doc_id, (_, line) in ref.items():
                if doc_id not in seen:
                    found.append(
                        located(
                            path,
                            None,
                            f"doc_id {doc_id} of {task} is missing, though run {ref_label!r} evaluated it "
                            f"({ref_path}:{int(line)})",
                        )
                    )
            if len(found) > MAX_PROBLEMS_PER_FILE:
                rest = len(found) - MAX_PROBLEMS_PER_FILE
                found = found[:MAX_PROBLEMS_PER_FILE] + [
                    located(path, None, f"... and {rest} more documents of {task} differ from run {ref_label!r}")
                ]
            problems.extend(found)
    return problems


def _runs_frame(runs: list[RunInfo]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": run.label,
                "model": short_model_name(run.model_name),
                "model_name": run.model_name,
                "model_source": run.model_source,
                "revision": run.revision,
                "budget": run.budget,
                "ignore": run.ignore,
                "gen_kwargs": format_gen_kwargs(run.gen_kwargs),
                "limit": run.limit,
                "lm_eval_version": run.lm_eval_version,
                "date": run.date.isoformat() if run.date else None,
                "results": str(run.path),
                "tasks": len(run.tasks),
            }
            for run in runs
        ],
        columns=[
            "run",
            "model",
            "model_name",
            "model_source",
            "revision",
            "budget",
            "ignore",
            "gen_kwargs",
            "limit",
            "lm_eval_version",
            "date",
            "results",
            "tasks",
        ],
    )


_SAMPLE_AGGREGATES = {
    "samples_rows": ("doc_id", "size"),
    "samples_acc": ("acc", "mean"),
    "samples_acc_strict": ("acc_strict", "mean"),
    "samples_no_answer": ("no_answer", "mean"),
    "records": ("thinking_tokens", "count"),
    "thinking_tokens_mean": ("thinking_tokens", "mean"),
    "answer_tokens_mean": ("answer_tokens", "mean"),
    "budget_hit_share": ("budget_hit", "mean"),
    "ignore_rounds_mean": ("ignore_rounds", "mean"),
    "record_budget_median": ("budget", "median"),
}


def _pick(primary: float, fallback: float) -> float:
    return primary if not math.isnan(primary) else fallback


def _gives_way(task: str, tasks: Iterable[str]) -> bool:
    """Whether another variant of ``task``'s benchmark in the same run fills the benchmark's column: the one
    closest to the plain task (:func:`m1_reports.columns.variant_order`: plain, CoT, then K-sample variants)."""
    base = base_task(task)
    return base != task and any(
        other != task and base_task(other) == base and variant_order(other) < variant_order(task) for other in tasks
    )


def _run_tasks_frame(runs: list[RunInfo], samples: pd.DataFrame, warnings: list[str]) -> pd.DataFrame:
    if len(samples):
        aggregates = samples.groupby(["run", "task"], observed=True).agg(**_SAMPLE_AGGREGATES)
        aggregates.index = aggregates.index.map(lambda key: (str(key[0]), str(key[1])))
        aggregated = aggregates.to_dict("index")
    else:
        aggregated = {}
    rows = []
    for run in runs:
        for task in order_tasks(run.tasks):
            result = run.tasks[task]
            agg = aggregated.get((run.label, task), {})
            rows_n = int(agg.get("samples_rows", 0))
            results_acc = result.value(result.metric) if result.metric else math.nan
            samples_acc = float(agg.get("samples_acc", math.nan))
            if rows_n and not math.isnan(results_acc) and not math.isnan(samples_acc):
                if abs(results_acc - samples_acc) > 1e-6:
                    warnings.append(
                        located(
                            run.files.samples_path(task),
                            None,
                            f"mean {result.metric} of the samples ({samples_acc:.4f}) differs from the results "
                            f"file ({results_acc:.4f}); the results file's value is shown",
                        )
                    )
            acc = _pick(results_acc, samples_acc)
            n = result.n if result.n is not None else (rows_n or None)
            if rows_n and n is not None and rows_n != n:
                warnings.append(
                    located(
                        run.files.samples_path(task),
                        None,
                        f"{rows_n} samples, but the results file counts {n} for {task}",
                    )
                )
            stderr = result.value(f"{result.metric}_stderr") if result.metric else math.nan
            if math.isnan(stderr) and n and n > 1 and not math.isnan(acc) and 0 <= acc <= 1:
                stderr = math.sqrt(acc * (1 - acc) / (n - 1))
            bench = benchmark(task)
            column, label = bench.column, bench.label if bench.label != task else result.alias
            if _gives_way(task, run.tasks):  # two variants of a benchmark in one run: the other has its column
                column = label = variant_label(task, label)
            budget = budget_of(result.gen_kwargs)
            rows.append(
                {
                    "run": run.label,
                    "task": task,
                    "column": column,
                    "label": label,
                    "table1": column in TABLE1_COLUMNS,
                    "metric": result.metric,
                    "filter": result.filter,
                    "acc": acc,
                    "acc_stderr": stderr,
                    "acc_strict": _pick(result.value("acc_strict"), float(agg.get("samples_acc_strict", math.nan))),
                    "no_answer": _pick(result.value("no_answer"), float(agg.get("samples_no_answer", math.nan))),
                    "n": n,
                    "samples_rows": rows_n,
                    "records": int(agg.get("records", 0)),
                    "thinking_tokens_mean": float(agg.get("thinking_tokens_mean", math.nan)),
                    "answer_tokens_mean": float(agg.get("answer_tokens_mean", math.nan)),
                    "budget_hit_share": float(agg.get("budget_hit_share", math.nan)),
                    "ignore_rounds_mean": float(agg.get("ignore_rounds_mean", math.nan)),
                    "budget": budget if budget is not None else run.budget,
                    "ignore": ignore_of(result.gen_kwargs) if budget is not None else run.ignore,
                    "record_budget_median": float(agg.get("record_budget_median", math.nan)),
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["run", "task", "column", "label", "table1", "acc", "acc_stderr", "n"])
    return frame
