"""The report's text files: Markdown (the protocol header atop ``table1.md`` and in ``protocol.md``; ``table1.md``,
``paired.md``, ``budget_scaling.md``, ``scoring.md``), LaTeX (``table1.tex``) and JSON (``leaderboard.json``).
The frames come from :mod:`m1_reports.table1`, :mod:`m1_reports.tables` and :mod:`m1_reports.deviations`, the cell
texts from :mod:`m1_reports.formatting`; pandas lays the tables out (``DataFrame.to_markdown``,
``Styler.to_latex``).  CSV is :mod:`m1_reports.render_csv`'s, HTML :mod:`m1_reports.render_html`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from m1_reports.deviations import ProtocolHeader
from m1_reports.document_counts import COUNT_MARK
from m1_reports.formatting import (
    ci_text,
    latex_escape,
    markdown_escape,
    markdown_text,
    number,
    p_text,
    pct,
    signed_pct,
    task_label,
    text_or_missing,
)
from m1_reports.protocol import INFO
from m1_reports.table1 import FROM_PAPER, FROM_RUN, Table1

_ALIGN = {"l": "left", "r": "right", "c": "center"}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table (pandas' ``DataFrame.to_markdown``, tabulate's pipe format, cells kept as text);
    ``align`` is one character per column: l, r or c (default: the first left, the others right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    frame = pd.DataFrame([[markdown_escape(v) for v in row] for row in rows], columns=range(len(headers)))
    text = frame.to_markdown(
        index=False,
        headers=[markdown_escape(h) for h in headers],
        tablefmt="pipe",
        colalign=[_ALIGN[a] for a in align],
        disable_numparse=True,
    )
    return text + "\n"


def latex_tabular(
    headers: Sequence[str], rows: Sequence[Sequence[str]], column_format: str, *, rule_after: int | None = None
) -> str:
    """A booktabs ``tabular`` of LaTeX cells (already escaped; pandas' ``Styler.to_latex``), with one more
    ``\\midrule`` after the first ``rule_after`` rows when that splits the rows."""
    frame = pd.DataFrame([list(row) for row in rows], columns=range(len(headers)))
    styler = frame.style.hide(axis="index").relabel_index(list(headers), axis="columns")
    lines = styler.to_latex(column_format=column_format, hrules=True).split("\n")
    if rule_after is not None and 0 < rule_after < len(rows):
        body = lines.index("\\midrule") + 1
        lines.insert(body + rule_after, "\\midrule")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ Table 1


def _delta_text(table: Table1, row: str, column: str) -> str:
    """The signed difference to the baseline in points, or "" (baseline row, or a value missing on either side)."""
    if table.delta is None or row == table.baseline:
        return ""
    return signed_pct(table.at("delta", row, column))


def _row_name(table: Table1, row: str, source: str) -> str:
    name = row + (" †" if source == FROM_PAPER else "")
    if table.is_partial_avg(row):
        name += " *"
    return name


def table1_markdown(table: Table1) -> str:
    headers = ["Model", *(table.labels[c] for c in table.columns)]
    body = []
    for row, source in zip(table.rows, table.sources, strict=True):
        cells = [_row_name(table, row, source)]
        for column in table.columns:
            value = table.at("value", row, column)
            text = pct(value)
            if table.at("best", row, column):
                text = f"**{text}**"
            delta = _delta_text(table, row, column)
            if delta:
                text += f" ({delta})"
            ci = ci_text(table.at("low", row, column), table.at("high", row, column))
            if ci:
                text += f" {ci}"
            cells.append(text + table.count_mark(row, column))
        body.append(cells)
    lines = [
        "# Table 1: accuracy (%)",
        "",
        "Columns: the ten benchmarks of the m1 paper's Table 1, their unweighted average (Avg), then other tasks. "
        "Bold: best in column. [low, high]: 95 % confidence interval (Wilson; Avg: normal)."
        + (
            f" (±x.xx): difference to the baseline **{markdown_text(table.baseline)}** in points."
            if table.baseline
            else ""
        ),
        "",
        markdown_table(headers, body),
    ]
    if table.notes:
        lines += [*(markdown_text(note) for note in table.notes), ""]
    row_notes = [(row, table.row_notes(row)) for row in table.rows if table.row_notes(row)]
    if row_notes:
        lines += ["Protocol notes of published rows:", ""]
        lines += [f"- {markdown_text(row)}: {markdown_text(' '.join(notes))}" for row, notes in row_notes]
        lines.append("")
    if FROM_PAPER in table.sources:
        lines.append(f"Source of the published rows: {table.citation.text} {table.citation.url}")
    return "\n".join(lines) + "\n"


def table1_latex(table: Table1) -> str:
    body = []
    for row, source in zip(table.rows, table.sources, strict=True):
        cells = [
            latex_escape(row)
            + ("$^\\dag$" if source == FROM_PAPER else "")
            + ("$^*$" if table.is_partial_avg(row) else "")
        ]
        for column in table.columns:
            value = table.at("value", row, column)
            text = pct(value).replace("–", "--")
            if table.at("best", row, column):
                text = f"\\textbf{{{text}}}"
            delta = _delta_text(table, row, column).replace("-", "$-$")
            if delta:
                text += f" {{\\scriptsize ({delta})}}"
            ci = ci_text(table.at("low", row, column), table.at("high", row, column))
            if ci:
                text += f" {{\\scriptsize {ci}}}"
            if table.count_note(row, column):
                text += "\\textsuperscript{\\ddag}"
            cells.append(text)
        body.append(cells)
    runs = table.sources.count(FROM_RUN)  # runs first, then the published rows below a rule
    lines = [
        "% m1-report Table 1 (accuracy, %). Needs \\usepackage{booktabs}.",
        f"% Published rows (\\dag): {table.citation.text}",
        latex_tabular(
            ["Model", *(latex_escape(table.labels[c]) for c in table.columns)],
            body,
            "l" + "r" * len(table.columns),
            rule_after=runs if FROM_PAPER in table.sources[runs:] else None,
        ).rstrip("\n"),
    ]
    count_lines = [n for n in table.notes if n.startswith(COUNT_MARK)]
    if count_lines:
        note = latex_escape(count_lines[0][len(COUNT_MARK) :].strip())
        lines += ["", "\\par\\footnotesize\\textsuperscript{\\ddag} " + note]
    lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- other tables


def paired_markdown(paired: pd.DataFrame) -> str:
    if paired.empty:
        return "# Paired comparisons\n\nNo two runs share samples files of a task.\n"
    parts = [
        "# Paired comparisons",
        "",
        "Same documents, two runs: accuracy (%) of a and b, a − b in points with a 95 % bootstrap interval, "
        "documents only a / only b got right, and the exact McNemar p-value. Avg: mean over the Table 1 tasks.",
        "",
    ]
    for (a_label, b_label), part in paired.groupby(["run_a", "run_b"], sort=False):
        parts.append(f"## {markdown_text(a_label)} vs {markdown_text(b_label)}")
        parts.append("")
        body = [
            [
                task_label(r.task, r.avg_benchmarks),
                number(r.n, 0),
                pct(r.acc_a),
                pct(r.acc_b),
                signed_pct(r.diff),
                ci_text(r.ci_low, r.ci_high, 2),
                number(r.a_only, 0),
                number(r.b_only, 0),
                p_text(r.p_mcnemar),
            ]
            for r in part.itertuples()
        ]
        parts.append(markdown_table(["task", "n", "a", "b", "a − b", "95 % CI", "only a", "only b", "McNemar p"], body))
    return "\n".join(parts)


def budget_markdown(budget: pd.DataFrame) -> str:
    if budget.empty:
        return "# Thinking budget\n\nNo runs.\n"
    body = [
        [
            r.run,
            task_label(r.task, r.avg_benchmarks),
            text_or_missing(r.budget),
            number(r.ignore, 0),
            pct(r.acc),
            number(r.thinking_tokens_mean),
            pct(r.budget_hit_share, 1),
            number(r.ignore_rounds_mean, 2),
        ]
        for r in budget.itertuples()
    ]
    return (
        "# Thinking budget\n\nPer run and task: budget (max_tokens_thinking), ignore rounds allowed "
        "(thinking_n_ignore), accuracy (%), mean thinking tokens, share of samples that hit the budget (%), "
        "mean ignore rounds used. Token columns need the m1 models' generation records.\n\n"
        + markdown_table(
            ["run", "task", "budget", "ignore", "acc", "thinking tokens", "hit budget %", "ignore rounds"], body
        )
    )


def scoring_markdown(scoring: pd.DataFrame) -> str:
    body = [
        [
            r.run,
            task_label(r.task, r.avg_benchmarks),
            number(r.n, 0),
            pct(r.acc),
            pct(r.acc_strict),
            signed_pct(r.fuzzy_gain),
            pct(r.no_answer),
        ]
        for r in scoring.itertuples()
    ]
    return (
        "# Scoring: fuzzy fallback\n\nacc (with the fuzzy fallback), acc_strict (exact letter only), their "
        "difference in points, and the share of samples with no answer (%).\n\n"
        + markdown_table(["run", "task", "n", "acc", "acc_strict", "fuzzy gain", "no answer"], body)
    )


# ------------------------------------------------------------------------------------------ protocol header

FLAG_MARK = "⚠"


def protocol_markdown(header: ProtocolHeader) -> str:
    """The protocol header: one table (runs that differ only in the sweep's axes share a row), then each
    difference from the paper's protocol once with the runs it applies to (warnings, then notes), the differences
    between the runs, the budget-forcing note, the document counts and the published rows' notes."""
    lines = [
        "# Protocol",
        "",
        f"The paper's protocol: {header.paper.text}. {FLAG_MARK}: differs from it in a way that can move a score.",
        "",
    ]
    axes = header.axes()
    if axes:
        shown = " × ".join(f"{label} {', '.join(values)}" for label, values in axes)
        lines += [f"Sweep: {markdown_text(shown)}.", ""]
    grouped = header.grouped_rows()
    if grouped:
        body = []
        for row in grouped:
            cells = [header.runs_text(row.runs), row.model_type or "–"]
            for key, _ in header.fields:
                text = row.cells[key]
                cells.append(f"{FLAG_MARK} {text}" if key in row.flagged else text)
            body.append(cells)
        headers = ["runs", "lm-eval model", *(label for _, label in header.fields)]
        lines.append(markdown_table(headers, body, "l" * len(headers)))
    groups = header.deviation_groups()
    warnings = [g for g in groups if g.level != INFO]
    notes = [g for g in groups if g.level == INFO]
    if warnings:
        lines += [f"{FLAG_MARK} Differences from the paper's protocol that can move a score:", ""]
        lines += [f"- {markdown_text(header.runs_text(g.runs))}: {markdown_text(g.message)}" for g in warnings]
        lines.append("")
    if notes:
        lines += ["Notes (no effect on the scores):", ""]
        lines += [f"- {markdown_text(header.runs_text(g.runs))}: {markdown_text(g.message)}" for g in notes]
        lines.append("")
    if header.differences:
        lines += ["The compared runs differ in" + (" (apart from the sweep's axes):" if axes else ":"), ""]
        for difference in header.differences:
            values = "; ".join(f"{text}: {', '.join(runs)}" for text, runs in difference.groups())
            lines.append(f"- {markdown_text(difference.label)}: {markdown_text(values)}")
        lines.append("")
    if header.forcing_note:
        lines += [markdown_text(header.forcing_note), ""]
    if header.counts:
        lines += [f"{COUNT_MARK} Document counts that differ from the paper's (marked {COUNT_MARK} in Table 1):", ""]
        for group in header.count_groups():
            lines.append(f"- {markdown_text(header.runs_text(group.runs))}: {markdown_text('; '.join(group.lines))}")
        lines.append("")
    if header.reference_notes:
        lines += ["Published rows, their own protocol:", ""]
        lines += [
            f"- {markdown_text(', '.join(names))}: {markdown_text(note)}"
            for names, note in header.grouped_reference_notes()
        ]
        lines.append("")
    if len(header.protocols) > 1:
        lines += ["Each run's own row: protocol.csv.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ JSON


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return _json_clean(value.item())
    return str(value)


def _json_clean(value: Any) -> Any:
    """``value`` as strict JSON takes it: numpy scalars as Python numbers, NaN and infinities as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):  # NaN, inf -> null (valid JSON)
        return None
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


def leaderboard_json(rows: list[dict[str, Any]]) -> str:
    """leaderboard.json: strict JSON (NaN and infinities are null), indented, UTF-8 text."""
    return json.dumps(_json_clean(rows), indent=2, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n"
