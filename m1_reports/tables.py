"""The report's other tables as pandas frames: paired comparisons, budget, scoring and the leaderboard
(Table 1 is :mod:`m1_reports.table1`).

Accuracies are fractions (0..1), as lm-eval writes them.  Every average over tasks is
:func:`m1_reports.average.table1_average`.  The text forms are :mod:`m1_reports.render_text` (Markdown, JSON),
:mod:`m1_reports.render_csv` and :mod:`m1_reports.render_html`; the cell formatting is :mod:`m1_reports.formatting`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from m1_base.errors import ReportInputError
from m1_reports.average import table1_average
from m1_reports.columns import AVG, TABLE1_COLUMNS, benchmark, order_tasks
from m1_reports.join import Loaded, group_positions
from m1_reports.naming import short_model_name
from m1_reports.stats import DEFAULT_BOOTSTRAP, paired_comparison, percentile_interval, stable_seed

# -------------------------------------------------------------------------------------- paired comparisons


def default_pairs(labels: list[str], baseline_run: str | None) -> list[tuple[str, str]]:
    """Every run against the baseline run, or (without one) every later run against the first."""
    if baseline_run is not None:
        return [(label, baseline_run) for label in labels if label != baseline_run]
    return [(label, labels[0]) for label in labels[1:]]


def paired_table(
    loaded: Loaded, pairs: list[tuple[str, str]], *, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0
) -> pd.DataFrame:
    """Per pair (a, b) and task: accuracy of a and b on the common documents, a - b with a bootstrap 95 % CI,
    the discordant counts and the exact McNemar p-value; plus an ``Avg`` row (:func:`table1_average` over the
    Table 1 columns both runs fill, bootstrapped by resampling within each task; ``avg_benchmarks``: how many)."""
    columns = [
        "run_a", "run_b", "task", "column", "n", "acc_a", "acc_b", "diff", "ci_low", "ci_high",
        "a_only", "b_only", "both", "neither", "p_mcnemar", "avg_benchmarks",
    ]  # fmt: skip
    filled = _filled_columns(loaded)
    samples = loaded.samples
    rows = []
    labels = loaded.labels
    positions = group_positions(samples)
    doc_ids = samples["doc_id"].to_numpy()
    scores = samples["acc"].to_numpy(dtype=float)
    for a_label, b_label in pairs:
        for label in (a_label, b_label):
            if label not in labels:
                raise ReportInputError(f"--pair names {label!r}, which is not a run", hint=f"runs: {', '.join(labels)}")
        if a_label == b_label:
            raise ReportInputError(f"--pair compares {a_label!r} with itself", hint="name two different runs")
        by_column: dict[str, tuple[float, float, int, np.ndarray]] = {}  # Table 1 column -> acc_a, acc_b, n, replicates
        a_tasks = {task for (label, task) in positions if label == a_label}
        b_tasks = {task for (label, task) in positions if label == b_label}
        for task in order_tasks(a_tasks & b_tasks):
            a_scores, b_scores = _paired_scores(positions[(a_label, task)], positions[(b_label, task)], doc_ids, scores)
            rng = np.random.default_rng(stable_seed(seed, a_label, b_label, task))
            result, replicates = paired_comparison(a_scores, b_scores, n_boot=n_boot, rng=rng)
            rows.append(
                {
                    "run_a": a_label,
                    "run_b": b_label,
                    "task": task,
                    "column": benchmark(task).column,
                    "n": result.n,
                    "acc_a": result.acc_a,
                    "acc_b": result.acc_b,
                    "diff": result.diff,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "a_only": result.a_only,
                    "b_only": result.b_only,
                    "both": result.both,
                    "neither": result.neither,
                    "p_mcnemar": result.p_value,
                    "avg_benchmarks": None,
                }
            )
            column = filled.get((a_label, task))
            if result.n and column in TABLE1_COLUMNS and column == filled.get((b_label, task)):
                by_column[column] = (result.acc_a, result.acc_b, result.n, replicates)
        average_a = table1_average({column: value[0] for column, value in by_column.items()})
        if average_a.exists:
            chosen = [by_column[column] for column in average_a.columns]
            acc_a, acc_b = average_a.value, table1_average({c: v[1] for c, v in by_column.items()}).value
            low, high = percentile_interval(np.mean(np.vstack([value[3] for value in chosen]), axis=0))
            rows.append(
                {
                    "run_a": a_label,
                    "run_b": b_label,
                    "task": AVG,
                    "column": AVG,
                    "n": sum(value[2] for value in chosen),
                    "acc_a": acc_a,
                    "acc_b": acc_b,
                    "diff": acc_a - acc_b,
                    "ci_low": low,
                    "ci_high": high,
                    "a_only": None,
                    "b_only": None,
                    "both": None,
                    "neither": None,
                    "p_mcnemar": math.nan,
                    "avg_benchmarks": average_a.count,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _filled_columns(loaded: Loaded) -> dict[tuple[str, str], str]:
    """(run, task) -> the Table 1 column the task fills in that run (a CoT variant beside its base task fills a
    column of its own)."""
    run_tasks = loaded.run_tasks
    if run_tasks.empty:
        return {}
    return {(str(r.run), str(r.task)): str(r.column) for r in run_tasks[["run", "task", "column"]].itertuples()}


def _paired_scores(
    a_pos: np.ndarray, b_pos: np.ndarray, doc_ids: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of two runs on their common documents, aligned by doc id (rows with a missing score dropped)."""
    if len(a_pos) == len(b_pos) and np.array_equal(doc_ids[a_pos], doc_ids[b_pos]):
        a, b = scores[a_pos], scores[b_pos]  # same documents in the same order (the common case)
    else:
        b_index = {doc_ids[i]: i for i in b_pos}
        pairs = [(i, b_index[doc_ids[i]]) for i in a_pos if doc_ids[i] in b_index]
        a = scores[[i for i, _ in pairs]] if pairs else np.empty(0)
        b = scores[[j for _, j in pairs]] if pairs else np.empty(0)
    keep = ~(np.isnan(a) | np.isnan(b))
    return a[keep], b[keep]



# ---------------------------------------------------------------------------------------- budget and scoring


def series_label(model: str, ignore: Any, samples: int = 1) -> str:
    """A budget curve's name: the model, its ignore rounds and its K samples per question (``m1-7B-23K (ignore 1,
    4 samples)``), so that a K-sample sweep's curve is drawn apart from a one-sample sweep's on the same panel."""
    parts = ([f"ignore {int(ignore)}"] if ignore and not pd.isna(ignore) else []) + (
        [f"{samples} samples"] if samples > 1 else []
    )
    return f"{model} ({', '.join(parts)})" if parts else model


def budget_table(loaded: Loaded) -> pd.DataFrame:
    """Per run and task (and ``Avg`` per run, :func:`table1_average`): budget, accuracy, mean thinking/answer
    tokens, share of samples that hit the budget, ignore rounds used.  ``budget_x`` is the numeric budget
    (``auto``: the median of the per-request budgets in the generation records).  The Avg row's token columns
    pool the samples of the benchmarks its accuracy averages."""
    run_tasks = loaded.run_tasks
    out_columns = [
        "run", "model", "series", "task", "column", "budget", "budget_x", "ignore", "acc", "n",
        "thinking_tokens_mean", "answer_tokens_mean", "budget_hit_share", "ignore_rounds_mean", "records",
        "avg_benchmarks",
    ]  # fmt: skip
    if run_tasks.empty:
        return pd.DataFrame(columns=out_columns)
    runs = {run.label: run for run in loaded.runs}
    samples = loaded.samples
    rows = []
    for label in loaded.labels:
        run = runs[label]
        model = short_model_name(run.model_name)
        repeats = max((int(result.repeats) for result in run.tasks.values()), default=1)
        part = run_tasks[run_tasks["run"] == label]
        for r in part.itertuples():
            rows.append(
                {
                    "run": label,
                    "model": model,
                    "series": series_label(model, r.ignore, repeats),
                    "task": r.task,
                    "column": r.column,
                    "budget": r.budget,
                    "budget_x": _budget_x(r.budget, r.record_budget_median),
                    "ignore": r.ignore,
                    "acc": r.acc,
                    "n": r.n,
                    "thinking_tokens_mean": r.thinking_tokens_mean,
                    "answer_tokens_mean": r.answer_tokens_mean,
                    "budget_hit_share": r.budget_hit_share,
                    "ignore_rounds_mean": r.ignore_rounds_mean,
                    "records": r.records,
                    "avg_benchmarks": None,
                }
            )
        table1 = part[part["table1"].astype(bool)]
        average = table1_average(dict(zip(table1["column"], table1["acc"], strict=True)))
        if not average.exists:
            continue
        chosen = table1[table1["column"].isin(average.columns)]
        run_samples = samples[(samples["run"] == label) & samples["task"].isin(list(chosen["task"]))]
        record_budget = run_samples["budget"].median() if len(run_samples) else math.nan
        rows.append(
            {
                "run": label,
                "model": model,
                "series": series_label(model, run.ignore, repeats),
                "task": AVG,
                "column": AVG,
                "budget": run.budget,
                "budget_x": _budget_x(run.budget, record_budget),
                "ignore": run.ignore,
                "acc": average.value,
                "n": int(chosen["n"].fillna(0).sum()),
                "thinking_tokens_mean": float(run_samples["thinking_tokens"].mean()) if len(run_samples) else math.nan,
                "answer_tokens_mean": float(run_samples["answer_tokens"].mean()) if len(run_samples) else math.nan,
                "budget_hit_share": float(run_samples["budget_hit"].mean()) if len(run_samples) else math.nan,
                "ignore_rounds_mean": float(run_samples["ignore_rounds"].mean()) if len(run_samples) else math.nan,
                "records": int(run_samples["thinking_tokens"].count()) if len(run_samples) else 0,
                "avg_benchmarks": average.count,
            }
        )
    frame = pd.DataFrame(rows, columns=out_columns)
    frame["avg_benchmarks"] = frame["avg_benchmarks"].astype("Int64")
    return frame


def _budget_x(budget: Any, record_median: float) -> float:
    if budget is None or (isinstance(budget, float) and math.isnan(budget)):
        return math.nan
    if isinstance(budget, int | float | np.integer):
        return float(budget)
    if str(budget).isdigit():
        return float(budget)
    return float(record_median) if record_median is not None and not math.isnan(record_median) else math.nan


def scoring_table(loaded: Loaded) -> pd.DataFrame:
    """``acc`` next to ``acc_strict`` and ``no_answer`` per run and task, and an ``Avg`` row per run: each metric
    averaged (:func:`table1_average`) over the Table 1 benchmarks the run's accuracy average covers."""
    columns = ["run", "task", "column", "n", "acc", "acc_strict", "fuzzy_gain", "no_answer", "avg_benchmarks"]
    run_tasks = loaded.run_tasks
    if run_tasks.empty:
        return pd.DataFrame(columns=columns)
    frame = run_tasks[["run", "task", "column", "n", "acc", "acc_strict", "no_answer", "table1"]].copy()
    frame["fuzzy_gain"] = frame["acc"] - frame["acc_strict"]
    rows = [frame]
    for label in loaded.labels:
        part = frame[(frame["run"] == label) & frame["table1"].astype(bool)]
        average = table1_average(dict(zip(part["column"], part["acc"], strict=True)))
        if not average.exists:
            continue
        part = part[part["column"].isin(average.columns)]
        metric = lambda name, part=part: table1_average(dict(zip(part["column"], part[name], strict=True))).value  # noqa: E731
        rows.append(
            pd.DataFrame(
                [
                    {
                        "run": label,
                        "task": AVG,
                        "column": AVG,
                        "n": int(part["n"].fillna(0).sum()),
                        "acc": average.value,
                        "acc_strict": metric("acc_strict"),
                        "fuzzy_gain": metric("fuzzy_gain"),
                        "no_answer": metric("no_answer"),
                        "avg_benchmarks": average.count,
                    }
                ]
            )
        )
    result = pd.concat([r for r in rows if not r.empty], ignore_index=True)
    if "avg_benchmarks" not in result:
        result["avg_benchmarks"] = None
    result["avg_benchmarks"] = result["avg_benchmarks"].astype("Int64")
    order = {label: i for i, label in enumerate(loaded.labels)}
    result["_run"] = result["run"].map(order)
    result["_task"] = result["task"].map(lambda t: 1 if t == AVG else 0)
    result = result.sort_values(["_run", "_task"], kind="stable").drop(columns=["_run", "_task"])
    return result[columns].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ parallel samples

#: the K-sample metric families of the parallel-samples table, in its column order
SAMPLE_FAMILIES = ("maj", "pass")


def parallel_samples_table(loaded: Loaded) -> pd.DataFrame:
    """Per run and task with K samples per question (lm-eval's ``repeats``, the ``<task>_k<K>`` tasks), and an
    ``Avg`` row per such run: K (``samples``), n, ``acc`` (the mean over the K samples, Table 1's) and the results'
    ``maj@k`` and ``pass@k`` for k = 1 .. the largest K (blank beyond a run's K).  The Avg of a metric is
    :func:`table1_average` over the Table 1 benchmarks of the run's Avg, when each of them has it.  Empty (with
    the columns) without a K-sample run."""
    results = {run.label: run.tasks for run in loaded.runs}
    run_tasks = loaded.run_tasks
    largest = max(
        (k for tasks in results.values() for result in tasks.values() for f in SAMPLE_FAMILIES for k in result.ks(f)),
        default=0,
    )
    metrics = [f"{family}@{k}" for family in SAMPLE_FAMILIES for k in range(1, largest + 1)]
    columns = ["run", "task", "column", "samples", "n", "acc", *metrics, "avg_benchmarks"]
    if not largest or run_tasks.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for label in loaded.labels:
        part = run_tasks[run_tasks["run"] == label]
        tasks = results.get(label, {})
        own = []
        for r in part.itertuples():
            result = tasks.get(str(r.task))
            if result is None or not any(result.ks(family) for family in SAMPLE_FAMILIES):
                continue
            own.append(r)
            rows.append(
                {
                    "run": label,
                    "task": str(r.task),
                    "column": r.column,
                    "samples": result.repeats,
                    "n": r.n,
                    "acc": r.acc,
                    **{name: result.value(name) for name in metrics},
                    "avg_benchmarks": None,
                }
            )
        table1 = part[part["table1"].astype(bool)]
        average = table1_average(dict(zip(table1["column"], table1["acc"], strict=True)))
        chosen = table1[table1["column"].isin(average.columns)]
        if not own or not average.exists or any(str(t) not in tasks for t in chosen["task"]):
            continue
        chosen_results = [tasks[str(t)] for t in chosen["task"]]
        repeats = {result.repeats for result in chosen_results}
        values = {}
        for name in metrics:
            found = [result.value(name) for result in chosen_results]
            values[name] = (
                math.nan if any(math.isnan(v) for v in found)
                else table1_average(dict(zip(chosen["column"], found, strict=True))).value
            )  # fmt: skip
        rows.append(
            {
                "run": label,
                "task": AVG,
                "column": AVG,
                "samples": repeats.pop() if len(repeats) == 1 else None,
                "n": int(chosen["n"].fillna(0).sum()),
                "acc": average.value,
                **values,
                "avg_benchmarks": average.count,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("samples", "n", "avg_benchmarks"):
        frame[name] = frame[name].astype("Int64")
    return frame


# ------------------------------------------------------------------------------------------------ leaderboard


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(float(value)) else float(value)
    return value


def leaderboard_rows(loaded: Loaded) -> list[dict[str, Any]]:
    """One row per run, the form a leaderboard submission carries (accuracies as fractions, like lm-eval);
    ``avg_table1`` is :func:`table1_average` (``avg_table1_benchmarks``: over how many of the ten)."""
    rows = []
    run_tasks = loaded.run_tasks
    for run in loaded.runs:
        part = run_tasks[run_tasks["run"] == run.label] if len(run_tasks) else run_tasks
        tasks = {}
        for r in part.itertuples():
            tasks[str(r.task)] = {
                "acc": _clean(r.acc),
                "acc_stderr": _clean(r.acc_stderr),
                "acc_strict": _clean(r.acc_strict),
                "no_answer": _clean(r.no_answer),
                "n": _clean(r.n),
            }
        table1 = part[part["table1"].astype(bool)] if len(part) else part
        average = table1_average(dict(zip(table1["column"], table1["acc"], strict=True)) if len(table1) else {})
        rows.append(
            {
                "run": run.label,
                "model": run.model_name,
                "revision": run.revision,
                "model_source": run.model_source,
                "model_args": run.model_args,
                "gen_kwargs": run.gen_kwargs,
                "max_tokens_thinking": run.budget,
                "thinking_n_ignore": run.ignore,
                "limit": run.limit,
                "n": int(sum(t["n"] or 0 for t in tasks.values())),
                "avg_table1": average.value if average.exists else None,
                "avg_table1_benchmarks": average.count,
                "tasks": tasks,
                "lm_eval_version": run.lm_eval_version,
                "date": run.date.isoformat() if run.date else None,
                "results_file": str(run.path),
            }
        )
    return rows


