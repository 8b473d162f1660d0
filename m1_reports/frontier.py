"""The frontier: accuracy against the tokens generated per question, over the settings of a sweep, with the Pareto
frontier marked.  The data only: the figures are :mod:`m1_reports.render_figures` (Plotly, ``index.html``) and
:mod:`m1_reports.render_plots` (``frontier.png``/``.svg``), the file :mod:`m1_reports.render_csv`'s ``csv_text``
(``frontier.csv``).

A **sweep** is two or more settings (thinking budget, "Wait" rounds) of one model whose protocols are otherwise the
same (:func:`sweep_groups`); a report without one has no frontier (an empty frame).  A **point** is one run on one
task, or on the Table 1 average: its accuracy (the results file's, as in Table 1; the Avg by
:func:`m1_reports.average.table1_average`) with its 95 % interval (Wilson; Avg: normal, as Table 1), and its mean
tokens generated per question: thinking + answer tokens of the m1 generation records, summed over every sample of
a question, averaged over the questions that have records (the Avg pools the questions of the benchmarks its
accuracy averages).  A run without records has no tokens and no point.

A run of K samples per question (lm-eval's ``repeats``, the ``<task>_k<K>`` tasks) spends k samples' tokens on a
point of k samples: its accuracy (``acc``, the mean over its K samples) is that of one sample, so its ``budget``
and ``Wait rounds`` points have ``k`` 1 and the mean tokens of one sample (``mean_tokens_per_sample``: the records'
tokens over their number); its ``maj@k`` points k times that.

Every point belongs to a **strategy**, a column value, so that a strategy is one more set of rows:

- ``budget``: the settings without "Wait" rounds (ignore 0, and a run without forcing) at increasing budgets;
- ``Wait rounds``: the settings of one budget at increasing ignore rounds (one curve per such budget; its
  ignore-0 setting starts it, so that point is also a ``budget`` row);
- ``maj@k``: a majority vote over k samples, for every k of a K-sample setting's results (``maj@1`` .. ``maj@K``,
  one curve per setting): accuracy ``maj@k`` (Avg: :func:`~m1_reports.average.table1_average` over the benchmarks
  of the run's Avg, when each of them has ``maj@k``), ``k`` set and ``mean_tokens_per_question`` k x
  ``mean_tokens_per_sample``.

The **Pareto frontier** of a benchmark column (a panel: the tasks that fill one column of Table 1, ``m1_medqa`` and
``m1_medqa_k8`` of other runs; or the Avg) is the points that no other point beats, that is no other point has an
accuracy at least as high with at most as many tokens, and one of the two strictly (:func:`pareto_mask`); equal
points are both on it.  Several sweeps of one model (a greedy sweep beside a K-sample one, +CoT beside the plain
prompt) share the panel; their curves are named apart (``budget (no Wait rounds), 4 samples``: :func:`sweep_names`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from m1_reports.average import table1_average
from m1_reports.columns import AVG, is_cot, order_columns
from m1_reports.deviations import ProtocolHeader
from m1_reports.join import Loaded
from m1_reports.naming import short_model_name
from m1_reports.read_results import RunInfo, TaskResult
from m1_reports.stats import mean_of_proportions, wilson_interval

STRATEGY_BUDGET, STRATEGY_WAIT, STRATEGY_MAJORITY = "budget", "Wait rounds", "maj@k"
# the figures' order (and colours); another strategy comes after them
STRATEGIES = (STRATEGY_BUDGET, STRATEGY_WAIT, STRATEGY_MAJORITY)

COLUMNS = [
    "task", "column", "model", "strategy", "curve", "run", "budget", "ignore", "k", "mean_tokens_per_question",
    "mean_tokens_per_sample", "samples_per_question", "accuracy", "ci_low", "ci_high", "n", "avg_benchmarks",
    "on_frontier",
]  # fmt: skip


@dataclass(frozen=True)
class SweepSetting:
    """One run of a sweep: its budget (an int, ``"auto"``, or None without forcing), ignore rounds (0 without
    forcing) and the number its budget is ordered by (``auto``: the records' median; none: after every budget)."""

    run: str
    model: str
    budget: int | str | None
    ignore: int
    order: float


# --------------------------------------------------------------------------------------------------- sweeps


def sweep_groups(loaded: Loaded, header: ProtocolHeader | None = None) -> list[list[str]]:
    """The runs of each sweep, in the report's order: runs of one model whose protocols are the same apart from the
    sweep's axes (thinking budget, ignore rounds) and the token caps these set, at two or more settings."""
    protocols = {p.run: p for p in header.protocols} if header is not None else {}
    groups: dict[tuple[object, ...], list[RunInfo]] = {}
    for run in loaded.runs:
        protocol = protocols.get(run.label)
        same = ()
        if protocol is not None:
            cells = protocol.series_display()
            same = (protocol.model_type, *(text for key, text in sorted(cells.items()) if key != "max_tokens"))
        groups.setdefault((run.model_name, run.revision, *same), []).append(run)
    return [
        [run.label for run in runs]
        for runs in groups.values()
        if len({(run.budget, run.ignore or 0) for run in runs}) > 1
    ]


def _settings(loaded: Loaded, labels: Sequence[str]) -> list[SweepSetting]:
    runs = {run.label: run for run in loaded.runs}
    samples = loaded.samples
    settings = []
    for label in labels:
        run = runs[label]
        budget = run.budget
        if budget is None:
            order = math.inf
        elif isinstance(budget, int):
            order = float(budget)
        else:  # "auto": the per-request budgets the records hold
            part = samples[samples["run"] == label]["budget"] if len(samples) else pd.Series(dtype=float)
            order = float(part.median()) if part.notna().any() else math.inf
        settings.append(SweepSetting(label, short_model_name(run.model_name), budget, int(run.ignore or 0), order))
    return settings


def curves(settings: Sequence[SweepSetting]) -> list[tuple[str, str, list[SweepSetting]]]:
    """(strategy, curve, its settings in order) of one sweep: the ``budget`` curve (ignore 0 by budget), then one
    ``Wait rounds`` curve per budget with ignore rounds (by rounds).  A budget curve of one point that starts a
    Wait-rounds curve is left out (that curve has it)."""
    by_budget = sorted(settings, key=lambda s: (s.order, str(s.budget), s.ignore))
    plain = [s for s in by_budget if s.ignore == 0]
    waits: dict[object, list[SweepSetting]] = {}
    for setting in by_budget:
        if setting.budget is not None and any(s.ignore > 0 and s.budget == setting.budget for s in settings):
            waits.setdefault(setting.budget, []).append(setting)
    found = []
    if len(plain) > 1 or (plain and not any(plain[0] in members for members in waits.values())):
        found.append((STRATEGY_BUDGET, "budget (no Wait rounds)", plain))
    for budget, members in waits.items():
        found.append((STRATEGY_WAIT, f"Wait rounds at budget {budget}", sorted(members, key=lambda s: s.ignore)))
    return found


# --------------------------------------------------------------------------------------------------- points


def _token_sums(loaded: Loaded) -> pd.DataFrame:
    """Per (run, task): the tokens generated (all samples), the questions with records, the samples."""
    samples = loaded.samples
    if samples.empty or "generated_tokens" not in samples:
        return pd.DataFrame(columns=["tokens", "questions", "generations"])
    sums = samples.groupby(["run", "task"], observed=True).agg(
        tokens=("generated_tokens", "sum"), questions=("generated_tokens", "count"), generations=("generations", "sum")
    )
    sums.index = sums.index.map(lambda key: (str(key[0]), str(key[1])))
    return sums


def _tokens(sums: pd.DataFrame, keys: Sequence[tuple[str, str]]) -> tuple[float, float, float]:
    """(mean tokens per question, per sample, samples per question) pooled over ``keys``; NaN without records."""
    present = [key for key in keys if key in sums.index]
    if not present:
        return math.nan, math.nan, math.nan
    part = sums.loc[present]
    tokens, questions, generations = (
        float(part["tokens"].sum()),
        float(part["questions"].sum()),
        float(part["generations"].sum()),
    )
    if not questions:
        return math.nan, math.nan, math.nan
    return tokens / questions, tokens / generations if generations else math.nan, generations / questions


def _results(loaded: Loaded, run: str) -> dict[str, TaskResult]:
    """The run's task results (task -> :class:`~m1_reports.read_results.TaskResult`)."""
    info = next((r for r in loaded.runs if r.label == run), None)
    return dict(info.tasks) if info is not None else {}


def _one_sample(results: dict[str, TaskResult], tasks: Sequence[str], tokens: tuple[float, float, float]) -> float:
    """Tokens per question of a one-sample accuracy: a K-sample run's (a task of K > 1) is one sample's."""
    per_question, per_sample, _ = tokens
    return per_sample if any(t in results and results[t].repeats > 1 for t in tasks) else per_question


def _points(loaded: Loaded, run: str, sums: pd.DataFrame) -> list[dict[str, object]]:
    """The run's points without strategy: one per task with tokens, then the Avg."""
    run_tasks = loaded.run_tasks
    part = run_tasks[run_tasks["run"] == run] if len(run_tasks) else run_tasks
    results = _results(loaded, run)
    points = []
    for r in part.itertuples():
        n = None if r.n is None or pd.isna(r.n) else int(r.n)
        low, high = wilson_interval(float(r.acc), n)
        tokens = _tokens(sums, [(run, str(r.task))])
        per_question, per_sample, samples = _one_sample(results, [str(r.task)], tokens), tokens[1], tokens[2]
        points.append(
            {
                "task": str(r.task),
                "column": r.column,
                "mean_tokens_per_question": per_question,
                "mean_tokens_per_sample": per_sample,
                "samples_per_question": samples,
                "accuracy": float(r.acc),
                "ci_low": low,
                "ci_high": high,
                "n": n,
                "avg_benchmarks": None,
            }
        )
    table1 = part[part["table1"].astype(bool)] if len(part) else part
    average = table1_average(dict(zip(table1["column"], table1["acc"], strict=True)) if len(table1) else {})
    if average.exists:
        chosen = table1[table1["column"].isin(average.columns)]
        ns = [None if pd.isna(n) else n for n in chosen["n"]]
        _, low, high = mean_of_proportions(list(chosen["acc"]), ns)
        tokens = _tokens(sums, [(run, str(t)) for t in chosen["task"]])
        per_question, per_sample, samples = _one_sample(results, list(chosen["task"]), tokens), tokens[1], tokens[2]
        points.append(
            {
                "task": AVG,
                "column": AVG,
                "mean_tokens_per_question": per_question,
                "mean_tokens_per_sample": per_sample,
                "samples_per_question": samples,
                "accuracy": average.value,
                "ci_low": low,
                "ci_high": high,
                "n": int(chosen["n"].fillna(0).sum()),
                "avg_benchmarks": average.count,
            }
        )
    return points


def _majority_points(loaded: Loaded, run: str, sums: pd.DataFrame) -> list[dict[str, object]]:
    """The run's ``maj@k`` points (every k of its results' ``maj@k``): per task, then the Avg for every k that each
    benchmark of the run's Avg has; without strategy, as :func:`_points`."""
    run_tasks = loaded.run_tasks
    part = run_tasks[run_tasks["run"] == run] if len(run_tasks) else run_tasks
    results = _results(loaded, run)
    points = []
    for r in part.itertuples():
        result = results.get(str(r.task))
        ks = result.ks("maj") if result is not None else []
        if not ks:
            continue
        n = None if r.n is None or pd.isna(r.n) else int(r.n)
        _, per_sample, samples = _tokens(sums, [(run, str(r.task))])
        for k in ks:
            accuracy = result.value(f"maj@{k}")  # type: ignore[union-attr]
            low, high = wilson_interval(accuracy, n)
            points.append(
                {
                    "task": str(r.task),
                    "column": r.column,
                    "k": k,
                    "mean_tokens_per_question": k * per_sample,
                    "mean_tokens_per_sample": per_sample,
                    "samples_per_question": samples,
                    "accuracy": accuracy,
                    "ci_low": low,
                    "ci_high": high,
                    "n": n,
                    "avg_benchmarks": None,
                }
            )
    table1 = part[part["table1"].astype(bool)] if len(part) else part
    average = table1_average(dict(zip(table1["column"], table1["acc"], strict=True)) if len(table1) else {})
    if not average.exists:
        return points
    chosen = table1[table1["column"].isin(average.columns)]
    chosen_results = [results.get(str(t)) for t in chosen["task"]]
    if any(result is None for result in chosen_results):
        return points
    common = set.intersection(*(set(result.ks("maj")) for result in chosen_results))  # type: ignore[union-attr]
    ns = [None if pd.isna(n) else n for n in chosen["n"]]
    _, per_sample, samples = _tokens(sums, [(run, str(t)) for t in chosen["task"]])
    for k in sorted(common):
        values = [result.value(f"maj@{k}") for result in chosen_results]  # type: ignore[union-attr]
        mean = table1_average(dict(zip(chosen["column"], values, strict=True)))
        _, low, high = mean_of_proportions(values, ns)
        points.append(
            {
                "task": AVG,
                "column": AVG,
                "k": k,
                "mean_tokens_per_question": k * per_sample,
                "mean_tokens_per_sample": per_sample,
                "samples_per_question": samples,
                "accuracy": mean.value,
                "ci_low": low,
                "ci_high": high,
                "n": int(chosen["n"].fillna(0).sum()),
                "avg_benchmarks": mean.count,
            }
        )
    return points


def sweep_names(loaded: Loaded, groups: Sequence[Sequence[str]]) -> list[str]:
    """What tells each sweep's curves apart from another sweep's of the same model (they share a panel): ``+CoT``
    and ``K samples`` where the model has more than one sweep, then ``sweep i`` if that is not enough; empty for a
    model's only sweep."""
    runs = {run.label: run for run in loaded.runs}
    models = [runs[labels[0]].model_name for labels in groups]
    names = []
    for labels, model in zip(groups, models, strict=True):
        if models.count(model) < 2:
            names.append("")
            continue
        tasks = [task for label in labels for task in runs[label].tasks]
        samples = max((result.repeats for label in labels for result in runs[label].tasks.values()), default=1)
        parts = (["+CoT"] if tasks and all(is_cot(task) for task in tasks) else []) + (
            [f"{samples} samples"] if samples > 1 else []
        )
        names.append(", ".join(parts))
    for i, (name, model) in enumerate(zip(names, models, strict=True)):
        same = [j for j, (n, m) in enumerate(zip(names, models, strict=True)) if m == model and n == name]
        if len(same) > 1:
            names[i] = ", ".join(part for part in (name, f"sweep {same.index(i) + 1}") if part)
    return names


def _named(curve: str, name: str) -> str:
    return f"{curve}, {name}" if name else curve


def majority_curve(setting: SweepSetting) -> str:
    """The name of a setting's ``maj@k`` curve: ``maj@k at budget 512, ignore 1``."""
    if setting.budget is None:
        return "maj@k without forcing"
    return f"maj@k at budget {setting.budget}" + (f", ignore {setting.ignore}" if setting.ignore else "")


def frontier_table(loaded: Loaded, header: ProtocolHeader | None = None) -> pd.DataFrame:
    """Every point of every sweep's strategies (:data:`COLUMNS`), with ``on_frontier`` (per benchmark column);
    Avg first, then the columns in the report's order.  Empty (with the columns) without a sweep or without
    generation records."""
    sums = _token_sums(loaded)
    rows = []
    groups = sweep_groups(loaded, header)
    for labels, name in zip(groups, sweep_names(loaded, groups), strict=True):
        points = {label: _points(loaded, label, sums) for label in labels}
        for strategy, curve, members in curves(_settings(loaded, labels)):
            for setting in members:
                for point in points[setting.run]:
                    if math.isnan(point["mean_tokens_per_question"]) or math.isnan(point["accuracy"]):
                        continue
                    rows.append(
                        {
                            **point,
                            "model": setting.model,
                            "strategy": strategy,
                            "curve": _named(curve, name),
                            "run": setting.run,
                            "budget": setting.budget,
                            "ignore": setting.ignore,
                            "k": 1,
                        }
                    )
        for setting in sorted(_settings(loaded, labels), key=lambda s: (s.order, str(s.budget), s.ignore)):
            for point in _majority_points(loaded, setting.run, sums):
                if math.isnan(point["mean_tokens_per_question"]) or math.isnan(point["accuracy"]):
                    continue
                rows.append(
                    {
                        **point,
                        "model": setting.model,
                        "strategy": STRATEGY_MAJORITY,
                        "curve": _named(majority_curve(setting), name),
                        "run": setting.run,
                        "budget": setting.budget,
                        "ignore": setting.ignore,
                    }
                )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    order = {column: i for i, column in enumerate(order_columns(zip(frame["task"], frame["column"], strict=True)))}
    frame = frame.sort_values("column", key=lambda column: column.map(order), kind="stable").reset_index(drop=True)
    return mark_frontier(frame)


# --------------------------------------------------------------------------------------------------- Pareto


def pareto_mask(tokens: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True for the points no other point beats: none has ``accuracy >=`` and ``tokens <=`` with one of them strict.
    Equal points are all on the frontier; a point with a NaN is on none."""
    t = np.asarray(tokens, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    valid = ~(np.isnan(t) | np.isnan(a))
    t, a = np.where(valid, t, np.inf), np.where(valid, a, -np.inf)
    fewer, more = t[None, :] < t[:, None], a[None, :] > a[:, None]  # [i, j]: point j has fewer tokens, more accuracy
    beats = (fewer | (t[None, :] == t[:, None])) & (more | (a[None, :] == a[:, None])) & (fewer | more)
    return valid & ~beats.any(axis=1)


def mark_frontier(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``on_frontier`` set per benchmark column (a panel) over all its rows (whatever their strategy
    and task: ``m1_medqa`` and ``m1_medqa_k8`` of one column are one frontier)."""
    frame = frame.copy()
    frame["on_frontier"] = False
    for _, positions in frame.groupby("column", sort=False).indices.items():
        part = frame.iloc[positions]
        frame.iloc[positions, frame.columns.get_loc("on_frontier")] = pareto_mask(
            part["mean_tokens_per_question"], part["accuracy"]
        )
    frame["on_frontier"] = frame["on_frontier"].astype(bool)
    for column in ("n", "avg_benchmarks", "k"):
        frame[column] = frame[column].astype("Int64")
    return frame


def frontier_line(points: pd.DataFrame) -> pd.DataFrame:
    """A panel's Pareto frontier as drawn: its points by tokens, each once (a point on two curves, a Wait-rounds
    curve's start that is also a budget row, is one point; equal points of different runs stay two)."""
    best = points[points["on_frontier"]]
    best = best.drop_duplicates(["run", "k", "mean_tokens_per_question", "accuracy"])
    return best.sort_values(["mean_tokens_per_question", "accuracy"])


def mixed_samples(points: pd.DataFrame) -> bool:
    """Whether ``points`` have ``budget``/``Wait rounds`` rows of one-sample runs and of K-sample runs (a greedy
    sweep beside a K-sample one): the figures then name the K-sample ones apart (:func:`legend_name`)."""
    rows = points[points["strategy"] != STRATEGY_MAJORITY]
    many = rows["samples_per_question"] > 1
    return bool(many.any() and (~many).any())


def legend_name(strategy: str, samples_per_question: float, mixed: bool) -> str:
    """A curve's name in the figures' legends: its strategy; a K-sample run's budget or Wait-rounds curve beside
    one-sample runs' (``mixed``) ``budget (mean of 4 samples)``, drawn dashed."""
    if not mixed or strategy == STRATEGY_MAJORITY or not samples_per_question > 1:
        return strategy
    return f"{strategy} (mean of {samples_per_question:.0f} samples)"


def missing_note(loaded: Loaded, header: ProtocolHeader | None, frame: pd.DataFrame) -> str:
    """Why a sweep has no frontier (its runs have no generation records); empty when there is one, or no sweep."""
    if not frame.empty or not sweep_groups(loaded, header):
        return ""
    return (
        "No frontier: the sweep's runs have no generation records (m1_generations_*.jsonl, written by the m1 "
        "models), so their tokens per question are unknown."
    )
