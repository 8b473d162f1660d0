"""The HTML pages: ``index.html`` (the report) and ``samples.html`` (the question browser,
:mod:`m1_reports.render_questions`), Jinja2 templates, autoescaped.

The first screen answers the question: a short summary (which runs, the best result, whether the protocol
differs from the paper's in a way that can move a score), a sweep's frontier (accuracy against tokens generated
per question, :mod:`m1_reports.frontier`) beside the headline figure (:mod:`m1_reports.render_figures`: the budget
curve of a sweep, else Table 1's Avg), and Table 1.  Then the protocol (grouped, each deviation once),
the paired comparisons as one table, the budget, scoring and run tables.

Everything shown comes from files (model text above all), so it is escaped; the pages run only the report's own
scripts, files in the report folder (``m1-report.js``, ``plotly.min.js``, the question data files): their
Content-Security-Policy allows scripts from the folder and no inline script, so an injected ``<script>`` could not
run even if it were not escaped.  The figures' data sit in ``<script type="application/json">`` blocks (data, not
code) with ``<``, ``>`` and ``&`` escaped.  Nothing is fetched from elsewhere: the folder works from file:// and
can be zipped and mailed.

The tables are Jinja2 markup rather than pandas' ``Styler.to_html``: their cells carry titles (n, count notes,
intervals), nested spans (best, delta, interval), sort keys and classes that the page keys on, which the Styler can
only give through raw HTML in cells (no autoescaping) and generated ids.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from m1_reports.columns import AVG, benchmark, column_label, order_columns, order_tasks
from m1_reports.deviations import ProtocolHeader
from m1_reports.formatting import ci_text, number, p_text, pct, signed_pct, task_label, text_or_missing
from m1_reports.join import Loaded
from m1_reports.naming import short_model_name
from m1_reports.protocol import AXES, FIELD_LABELS, INFO
from m1_reports.reference import Citation
from m1_reports.render_figures import PLOTLY_FILE, SWEEP, Figure
from m1_reports.render_questions import BROWSER_FILE, browser_data, page_json
from m1_reports.table1 import FROM_PAPER, Table1

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
SCRIPT_FILE = "m1-report.js"
__all__ = ["BROWSER_FILE", "SCRIPT_FILE", "render_browser", "render_index", "script_text"]


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def script_text() -> str:
    """``m1-report.js``: the pages' one script of their own (figures, sortable tables, the question browser)."""
    return (STATIC / SCRIPT_FILE).read_text(encoding="utf-8")


def _sign(value: float) -> str:
    if value is None or math.isnan(value) or abs(value) < 5e-5:
        return ""
    return "pos" if value > 0 else "neg"


def _table1_view(table: Table1) -> dict[str, Any]:
    rows = []
    for row, source in zip(table.rows, table.sources, strict=True):
        cells = []
        for column in table.columns:
            value = table.at("value", row, column)
            delta = ""
            sign = ""
            if table.delta is not None and row != table.baseline:
                delta_value = table.at("delta", row, column)
                delta = signed_pct(delta_value)
                sign = _sign(delta_value)
            n = table.at("n", row, column)
            count = table.count_note(row, column)
            ci = ci_text(table.at("low", row, column), table.at("high", row, column))
            title = "; ".join(
                part for part in (f"n = {int(n)}" if not math.isnan(n) else "", f"95 % CI {ci}" if ci else "", count)
                if part
            )
            cells.append(
                {
                    "value": pct(value),
                    "best": bool(table.at("best", row, column)),
                    "ci": ci,
                    "delta": delta,
                    "sign": sign,
                    "title": title,
                    "count": count,
                }
            )
        rows.append(
            {
                "name": row,
                "source": "paper" if source == FROM_PAPER else "run",
                "baseline": row == table.baseline,
                "partial": table.is_partial_avg(row),
                "notes": " ".join(table.row_notes(row)),
                "cells": cells,
            }
        )
    return {
        "columns": [table.labels[c] for c in table.columns],
        "rows": rows,
        "notes": table.notes,
        "has_paper": FROM_PAPER in table.sources,
    }


def _protocol_view(header: ProtocolHeader | None) -> dict[str, Any] | None:
    """The protocol section: the axes of a sweep, one table (runs that differ only in the axes share a row), each
    difference from the paper's once (warnings, notes), the differences between runs, counts, published rows."""
    if header is None:
        return None
    groups = header.deviation_groups()

    def stated(group: Any) -> dict[str, Any]:
        return {"runs": header.runs_text(group.runs), "message": group.message, "count": len(group.runs)}

    return {
        "paper": header.paper.text,
        "axes": [{"label": label, "shown": ", ".join(values)} for label, values in header.axes()],
        "fields": [label for _, label in header.fields],
        "rows": [
            {
                "runs": header.runs_text(row.runs),
                "run_list": "; ".join(row.runs),
                "model_type": row.model_type or "–",
                "cells": [
                    {"text": row.cells[key], "flagged": key in row.flagged, "noted": key in row.noted}
                    for key, _ in header.fields
                ],
            }
            for row in header.grouped_rows()
        ],
        "warnings": [stated(g) for g in groups if g.level != INFO],
        "notes": [stated(g) for g in groups if g.level == INFO],
        "differences": [
            {"label": d.label, "groups": [(text, ", ".join(runs)) for text, runs in d.groups()]}
            for d in header.differences
        ],
        "forcing_note": header.forcing_note,
        "counts": [{"runs": header.runs_text(c.runs), "lines": c.lines} for c in header.count_groups()],
        "reference_notes": [(", ".join(names), note) for names, note in header.grouped_reference_notes()],
        "per_run_file": len(header.protocols) > 1,
    }


def _paired_view(paired: pd.DataFrame) -> dict[str, Any]:
    """The paired comparisons as one table (filtered and sorted on the page): one row per pair and task."""
    rows = []
    for r in paired.itertuples():
        rows.append(
            {
                "task": task_label(r.task, r.avg_benchmarks),
                "a": r.run_a,
                "b": r.run_b,
                "n": number(r.n, 0),
                "acc_a": pct(r.acc_a),
                "acc_b": pct(r.acc_b),
                "diff": signed_pct(r.diff),
                "diff_key": "" if pd.isna(r.diff) else f"{100 * r.diff:.6f}",
                "sign": _sign(r.diff),
                "ci": ci_text(r.ci_low, r.ci_high, 2),
                "a_only": number(r.a_only, 0),
                "b_only": number(r.b_only, 0),
                "p": p_text(r.p_mcnemar),
                "p_key": "" if pd.isna(r.p_mcnemar) else f"{r.p_mcnemar:.12f}",
            }
        )
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    runs = list(dict.fromkeys([row["a"] for row in rows] + [row["b"] for row in rows]))
    return {"rows": rows, "tasks": tasks, "runs": runs}


def _summary(
    loaded: Loaded, header: ProtocolHeader | None, table: Table1, budget: pd.DataFrame, kind: str
) -> dict[str, Any]:
    """The first screen's sentences: which runs, on what; the sweep's axes; the best result; the protocol's state."""
    labels = loaded.labels
    models = list(dict.fromkeys(short_model_name(run.model_name) for run in loaded.runs))
    run_tasks = loaded.run_tasks
    tasks = order_tasks(run_tasks["task"].unique()) if len(run_tasks) else []
    # one benchmark once: its variants (m1_medqa_k8, m1_medqa_cot) ask its questions again
    benchmarks = {task: benchmark(task).column for task in tasks}
    sizes = run_tasks.groupby("task")["n"].max() if len(run_tasks) else pd.Series(dtype=float)
    most: dict[str, int] = {}
    for task, column in benchmarks.items():
        if task in sizes and not pd.isna(sizes[task]):
            most[column] = max(most.get(column, 0), int(sizes[task]))
    questions = sum(most.values())
    if len(labels) == 1:
        who = f"One run, {labels[0]}"
    elif len(models) == 1:
        who = f"{len(labels)} runs of {models[0]}"
    else:
        who = f"{len(labels)} runs of {len(models)} models ({', '.join(models)})"
    shown = [
        column_label(column, [t for t in tasks if benchmarks[t] == column])
        for column in order_columns(benchmarks.items())
    ]
    what = ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")
    lines = [f"{who}, on {what} ({questions:,} questions)." if tasks else f"{who}: no task results."]
    sweeps = _sweeps_sentence(header) if header is not None and header.axes() else ""
    if sweeps:
        lines.append(sweeps)
    result = _best_sweep_point(budget) if kind == SWEEP else _best_avg(table, labels)
    if result:
        lines.append(result)
    protocol: dict[str, Any] = {"warnings": [], "notes": 0, "counts": 0}
    if header is not None:
        groups = header.deviation_groups()
        protocol["warnings"] = [
            f"{g.message} ({header.runs_text(g.runs)})" for g in groups if g.level != INFO
        ]
        protocol["notes"] = sum(1 for g in groups if g.level == INFO)
        protocol["counts"] = len({note.run for note in header.counts})
    return {"lines": lines, "protocol": protocol, "warnings": len(loaded.warnings)}


def _sweeps_sentence(header: ProtocolHeader) -> str:
    """The sweeps' axes, one part per row of the protocol table that is a sweep (two or more runs) or has K > 1
    samples per question: ``A sweep over thinking budget 4, 8 × ignore rounds 0, 1.``; with a K-sample sweep
    beside it, ``Sweeps over ...; and over thinking budget 8, 16 with 4 samples per question (temperature 0.8).``"""
    by_run = {p.run: p for p in header.protocols}
    parts = []
    for row in header.grouped_rows():
        members = [by_run[run] for run in row.runs if run in by_run]
        samples = max((p.repeats for p in members), default=1)
        if len(members) < 2 and samples < 2:
            continue
        axes = []
        for key in AXES:
            values = list(dict.fromkeys(p.display()[key] for p in members))
            if len(values) > 1 or (key == "budget" and samples > 1 and any(p.forced for p in members)):
                axes.append(f"{FIELD_LABELS[key]} {row.cells[key]}")
        text = " × ".join(axes)
        if samples > 1:
            temperature = row.cells.get("temperature", "").split(" (")[0]
            text += f" with {samples} samples per question" + (f" (temperature {temperature})" if temperature else "")
        parts.append(text.strip().removeprefix("with "))
    if len(parts) < 2:
        return f"A sweep over {parts[0]}." if parts else ""
    return "Sweeps over " + "; and over ".join(parts) + "."


def _best_sweep_point(budget: pd.DataFrame) -> str:
    points = budget.dropna(subset=["acc"]) if len(budget) else budget
    if points.empty:
        return ""
    panel = order_columns(zip(points["task"], points["column"], strict=True))[0]  # the first panel: Avg, or a column
    part = points[points["column"] == panel]
    best, worst = part.loc[part["acc"].idxmax()], part.loc[part["acc"].idxmin()]
    where = "Avg" if panel == AVG else column_label(panel, part["task"])
    return (
        f"{where}: highest {pct(best['acc'])} % ({best['run']}), lowest {pct(worst['acc'])} % ({worst['run']})."
    )


def _best_avg(table: Table1, labels: Sequence[str]) -> str:
    runs = [row for row in table.rows if row in labels and not math.isnan(table.at("value", row, AVG))]
    if not runs:
        return ""
    best = max(runs, key=lambda row: table.at("value", row, AVG))
    text = f"Highest Table 1 Avg of the runs: {pct(table.at('value', best, AVG))} % ({best}"
    if table.delta is not None and best != table.baseline and table.baseline is not None:
        text += f", {signed_pct(table.at('delta', best, AVG))} points against {table.baseline}"
    return text + ")" + (" over fewer than the ten benchmarks" if table.is_partial_avg(best) else "") + "."


def _budget_view(budget: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "run": r.run,
            "task": task_label(r.task, r.avg_benchmarks),
            "budget": text_or_missing(r.budget),
            "ignore": number(r.ignore, 0),
            "acc": pct(r.acc),
            "thinking": number(r.thinking_tokens_mean),
            "answer": number(r.answer_tokens_mean),
            "hit": pct(r.budget_hit_share, 1),
            "rounds": number(r.ignore_rounds_mean, 2),
        }
        for r in budget.itertuples()
    ]


def _scoring_view(scoring: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "run": r.run,
            "task": task_label(r.task, r.avg_benchmarks),
            "n": number(r.n, 0),
            "acc": pct(r.acc),
            "acc_strict": pct(r.acc_strict),
            "gain": signed_pct(r.fuzzy_gain),
            "no_answer": pct(r.no_answer),
        }
        for r in scoring.itertuples()
    ]


def _parallel_samples_view(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """The K-sample runs' maj@k and pass@k (:func:`m1_reports.tables.parallel_samples_table`), in %; None without
    such a run."""
    if frame is None or frame.empty:
        return None
    metrics = [c for c in frame.columns if "@" in c and not frame[c].isna().all()]
    return {
        "metrics": metrics,
        "rows": [
            {
                "run": r["run"],
                "task": task_label(r["task"], r["avg_benchmarks"]),
                "samples": number(r["samples"], 0),
                "n": number(r["n"], 0),
                "acc": pct(r["acc"]),
                "cells": [pct(r[name]) for name in metrics],
            }
            for r in frame.to_dict("records")
        ],
    }


def _runs_view(runs_frame: pd.DataFrame) -> list[dict[str, str]]:
    return [{key: text_or_missing(value) for key, value in row.items()} for row in runs_frame.to_dict("records")]


def render_index(
    *,
    title: str,
    loaded: Loaded,
    table1: Table1,
    paired: pd.DataFrame,
    budget: pd.DataFrame,
    scoring: pd.DataFrame,
    citation: Citation,
    headline: tuple[str, Figure | None],
    frontier: Figure | None,
    svg: bytes | None,
    plot_note: str,
    frontier_svg: bytes | None = None,
    frontier_note: str = "",
    n_boot: int,
    browser: bool,
    warnings: Sequence[str] = (),
    protocol: ProtocolHeader | None = None,
    parallel_samples: pd.DataFrame | None = None,
) -> str:
    """index.html.  ``headline``: (kind, figure) of :func:`m1_reports.render_figures.headline`; ``frontier``: a
    sweep's frontier figure (:func:`m1_reports.render_figures.frontier`), first; ``svg``, ``frontier_svg``: the
    static figures, shown instead when there is no interactive one (Plotly not installed); ``frontier_note``: why
    a sweep has no frontier; ``parallel_samples``: the K-sample runs' maj@k and pass@k (a section after the budget
    table; none without such a run)."""
    kind, figure = headline
    plot_uri = _svg_uri(svg) if svg and figure is None else ""
    frontier_uri = _svg_uri(frontier_svg) if frontier_svg and frontier is None else ""
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            title=title,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            baseline=table1.baseline,
            summary=_summary(loaded, protocol, table1, budget, kind),
            headline=figure,
            frontier=frontier,
            frontier_uri=frontier_uri,
            frontier_note=frontier_note,
            plotly_file=PLOTLY_FILE if figure is not None or frontier is not None else "",
            script_file=SCRIPT_FILE,
            table1=_table1_view(table1),
            paired=_paired_view(paired),
            budget=_budget_view(budget),
            scoring=_scoring_view(scoring),
            parallel=_parallel_samples_view(parallel_samples),
            runs=_runs_view(loaded.runs_frame),
            citation=citation,
            plot_uri=plot_uri,
            plot_note=plot_note,
            n_boot=n_boot,
            browser_file=BROWSER_FILE if browser else "",
            warnings=list(warnings),
            protocol=_protocol_view(protocol),
        )
    )


def _svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def render_browser(*, title: str, loaded: Loaded, limit: int) -> tuple[str, dict[str, str]]:
    """samples.html (the question browser's page) and its data files (name -> JavaScript), one per task."""
    page, files = browser_data(loaded, limit)
    text = (
        environment()
        .get_template("samples.html.j2")
        .render(
            title=title,
            page=page,
            page_json=page_json(page),
            script_file=SCRIPT_FILE,
            limit=limit,
            page_size=page["page_size"],
            marker=page["marker"],
        )
    )
    return text, files
