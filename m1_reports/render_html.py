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
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from m1_reports.columns import benchmark, order_tasks
from m1_reports.deviations import ProtocolHeader
from m1_reports.formatting import ci_text, number, p_text, pct, signed_pct, task_label, text_or_missing
from m1_reports.join import Loaded
from m1_reports.kept_samples import BrowserSample
from m1_reports.protocol import FIELDS, INFO
from m1_reports.reference import Citation
from m1_reports.rescoring import NOT_RESCORED, RULE_TEXT
from m1_reports.suite import scores_with_marker, version_number
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


# ------------------------------------------------------------------------------------------- the sample browser
def anchor(task: str) -> str:
    return "task-" + re.sub(r"[^A-Za-z0-9_-]+", "-", task)


def verdict_view(sample: BrowserSample, version: Any = None) -> dict[str, str]:
    """The m1 scorer's extraction and rule for a shown sample, and whether it disagrees with the samples file
    (``version``: the run's task version, which names the scorer that wrote the file's score)."""
    verdict = sample.verdict
    if verdict is None or not verdict.scored:
        reason = verdict.reason if verdict is not None else "not re-scored"
        return {"extracted": "–", "rule": NOT_RESCORED, "rule_text": reason, "raw_extracted": "", "disagrees": ""}
    raw = verdict.raw_extracted.strip()
    shown_raw = raw if raw and raw != verdict.extracted and len(raw) <= 120 else ""
    disagrees = ""
    file_correct = sample.acc >= 1.0
    if verdict.correct != file_correct:
        why = (
            f"the run was scored by an older m1-eval scorer (task version {version}); re-score or re-run"
            if not scores_with_marker(version_number(version))
            else "the file was scored by another scorer than this m1-eval's"
        )
        disagrees = (
            f"This m1-eval's scorer judges it {'correct' if verdict.correct else 'wrong'}, the samples file "
            f"{'correct' if file_correct else 'wrong'}: {why}."
        )
    return {
        "extracted": verdict.extracted or "–",
        "rule": verdict.rule,
        "rule_text": RULE_TEXT.get(verdict.rule, verdict.rule),
        "raw_extracted": shown_raw,
        "disagrees": disagrees,
    }


def task_version(loaded: Loaded, sample: BrowserSample) -> Any:
    result = loaded.runs[sample.run].tasks.get(sample.task)
    return result.version if result is not None else None


def browser_tasks(loaded: Loaded) -> list[dict[str, Any]]:
    """samples.html's content: per task, per run, the kept wrong/unanswered samples with their texts and verdicts."""
    samples = loaded.samples
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    if len(samples):
        flagged = (samples["acc"] < 1.0) | (samples["no_answer"] > 0)
        counts = samples.assign(flagged=flagged).groupby(["run", "task"], observed=True)["flagged"].agg(["sum", "size"])
        totals = {(str(run), str(task)): (int(s), int(n)) for (run, task), (s, n) in counts.iterrows()}
    labels = loaded.labels
    by_task: dict[str, dict[int, list[BrowserSample]]] = {}
    for sample in loaded.browser:
        by_task.setdefault(sample.task, {}).setdefault(sample.run, []).append(sample)
    tasks = []
    for task in order_tasks(by_task):
        runs = []
        for run_index in sorted(by_task[task]):
            label = labels[run_index]
            items = []
            for s in by_task[task][run_index]:
                unanswered = s.unanswered
                items.append(
                    {
                        "kind": "unanswered" if unanswered else "wrong",
                        "kind_text": "no answer" if unanswered else "wrong",
                        "doc_id": str(s.doc_id),
                        "target": s.target,
                        **verdict_view(s, task_version(loaded, s)),
                        "where": f"{s.path.name}:{s.line}",
                        "prompt": s.prompt,
                        "thinking": s.thinking or "(none)",
                        "thinking_chars": len(s.thinking),
                        "answer": s.answer,
                    }
                )
            flagged, size = totals.get((label, task), (len(items), len(items)))
            runs.append({"run": label, "entries": items, "shown": len(items), "total": flagged, "samples": size})
        tasks.append({"anchor": anchor(task), "label": benchmark(task).label, "runs": runs})
    return tasks


def render_browser(*, title: str, loaded: Loaded, limit: int) -> str:
    """samples.html: per task, per run, the kept wrong/unanswered samples (:func:`browser_tasks`)."""
    tasks = browser_tasks(loaded)
    return (
        environment()
        .get_template("samples.html.j2")
        .render(title=title, tasks=tasks, limit=limit, rules=list(RULE_TEXT.items()), marker=ANSWER_MARKER)
    )
