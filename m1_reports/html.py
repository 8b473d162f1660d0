"""The HTML report (index.html) and sample browser (samples.html): Jinja2 templates, autoescaped.

Everything shown comes from files (model text above all), so it is escaped; the pages carry no script and a
Content-Security-Policy that forbids scripts, and embed the plot as a data: URI (self-contained pages).

The tables are Jinja2 markup rather than pandas' ``Styler.to_html``: their cells carry titles (n, count notes),
nested spans (best, delta, interval) and classes that the page's style sheet keys on, which the Styler can only
give through raw HTML in cells (no autoescaping) and generated ids.
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

from m1_reports.browser import browser_tasks
from m1_reports.formatting import ci_text, number, p_text, pct, signed_pct, task_label, text_or_missing
from m1_reports.frames import Loaded
from m1_reports.protocol import FIELDS, INFO
from m1_reports.protocol_header import ProtocolHeader
from m1_reports.reference import Citation
from m1_reports.rescoring import RULE_TEXT
from m1_reports.table1 import FROM_PAPER, Table1
from m1_tasks.scoring import ANSWER_MARKER

TEMPLATES = Path(__file__).resolve().parent / "templates"
BROWSER_FILE = "samples.html"


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


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
            title = f"n = {int(n)}" if not math.isnan(n) else ""
            cells.append(
                {
                    "value": pct(value),
                    "best": bool(table.at("best", row, column)),
                    "ci": ci_text(table.at("low", row, column), table.at("high", row, column)),
                    "delta": delta,
                    "sign": sign,
                    "title": f"{title}; {count}" if title and count else title or count,
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
    if header is None:
        return None
    rows = []
    for row in header.rows():
        rows.append(
            {
                "run": row["run"],
                "model_type": row["model_type"] or "–",
                "cells": [
                    {"text": row["cells"][key], "flagged": key in row["flagged"], "noted": key in row["noted"]}
                    for key, _ in FIELDS
                ],
                "flags": [{"text": f.message, "info": f.level == INFO} for f in row["flags"]],
                "counts": row["counts"],
            }
        )
    return {
        "paper": header.paper.text,
        "fields": [label for _, label in FIELDS],
        "rows": rows,
        "differences": [
            {"label": d.label, "runs": list(d.values.items())} for d in header.differences
        ],
        "forcing_note": header.forcing_note,
        "has_counts": bool(header.counts),
        "reference_notes": [(", ".join(names), note) for names, note in header.grouped_reference_notes()],
    }


def _paired_view(paired: pd.DataFrame) -> list[dict[str, Any]]:
    groups = []
    if paired.empty:
        return groups
    for (a_label, b_label), part in paired.groupby(["run_a", "run_b"], sort=False):
        rows = [
            {
                "task": task_label(r.task, r.avg_benchmarks),
                "n": number(r.n, 0),
                "acc_a": pct(r.acc_a),
                "acc_b": pct(r.acc_b),
                "diff": signed_pct(r.diff),
                "sign": _sign(r.diff),
                "ci": ci_text(r.ci_low, r.ci_high, 2),
                "a_only": number(r.a_only, 0),
                "b_only": number(r.b_only, 0),
                "p": p_text(r.p_mcnemar),
            }
            for r in part.itertuples()
        ]
        groups.append({"a": a_label, "b": b_label, "rows": rows})
    return groups


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
    svg: bytes | None,
    plot_note: str,
    n_boot: int,
    browser: bool,
    warnings: Sequence[str] = (),
    protocol: ProtocolHeader | None = None,
) -> str:
    plot_uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii") if svg else ""
    return (
        environment()
        .get_template("index.html.j2")
        .render(
            title=title,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            baseline=table1.baseline,
            table1=_table1_view(table1),
            paired=_paired_view(paired),
            budget=_budget_view(budget),
            scoring=_scoring_view(scoring),
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


def render_browser(*, title: str, loaded: Loaded, limit: int) -> str:
    """samples.html: per task, per run, the kept wrong/unanswered samples (:func:`m1_reports.browser.browser_tasks`)."""
    tasks = browser_tasks(loaded)
    return (
        environment()
        .get_template("samples.html.j2")
        .render(title=title, tasks=tasks, limit=limit, rules=list(RULE_TEXT.items()), marker=ANSWER_MARKER)
    )
