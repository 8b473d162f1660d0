"""Table 1 as pandas frames: the runs beside the paper's published rows over the ten benchmarks, Avg
(:mod:`m1_reports.average`) and any other task; 95 % intervals, best per column, differences to ``--baseline``,
and the cells scored on other documents than the paper's.

Accuracies are fractions (0..1) in the frames; ``table1.csv`` (:func:`m1_reports.render_csv.table1_frame`) shows
percentages, as the paper does.  The text forms are :mod:`m1_reports.render_text` (Markdown, LaTeX) and
:mod:`m1_reports.render_html`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from m1_reports.average import Average, table1_average
from m1_reports.columns import AVG, TABLE1_COLUMN_INFO, TABLE1_COLUMNS, by_column, order_tasks
from m1_reports.document_counts import COUNT_MARK, CountNote
from m1_reports.join import Loaded
from m1_reports.reference import Citation, reference_names, reference_notes, reference_table, resolve_name
from m1_reports.stats import mean_of_proportions, wilson_interval

PAPER_PREFIX = "paper:"
#: where a Table 1 row comes from: a run read, or the paper (published rows)
FROM_RUN, FROM_PAPER = "run", "paper"


@dataclass
class Table1:
    """Rows = runs + reference rows; columns = the ten benchmarks, Avg, then any other task."""

    rows: list[str]
    sources: list[str]  # FROM_RUN or FROM_PAPER per row
    columns: list[str]
    labels: dict[str, str]  # column -> display label
    value: pd.DataFrame  # fractions
    low: pd.DataFrame
    high: pd.DataFrame
    n: pd.DataFrame
    best: pd.DataFrame  # bool
    delta: pd.DataFrame | None  # value - baseline value (fractions)
    baseline: str | None
    averages: dict[str, Average]  # row -> its Avg (m1_reports.average: which of the ten benchmarks it covers)
    citation: Citation
    notes: list[str] = field(default_factory=list)
    counts: dict[tuple[str, str], CountNote] = field(default_factory=dict)  # (row, column) -> count note
    references: dict[str, str] = field(default_factory=dict)  # published row as shown -> its name in the paper

    @property
    def reference_names(self) -> list[str]:
        return list(self.references.values())

    def row_notes(self, row: str) -> list[str]:
        """A published row's own protocol notes (``data/paper_protocol.json``); none for runs."""
        name = self.references.get(row)
        return reference_notes(name) if name is not None else []

    def is_partial_avg(self, row: str) -> bool:
        average = self.averages.get(row)
        return average is not None and average.partial

    def count_note(self, row: str, column: str) -> str:
        """Why the cell is marked ``‡`` (its documents differ from the paper's), or ""."""
        note = self.counts.get((row, column))
        if note is not None:
            return note.text
        if column == AVG:
            short = [n.label for (r, c), n in self.counts.items() if r == row and c in TABLE1_COLUMNS]
            if short:
                return "over benchmarks with other documents than the paper's: " + ", ".join(short)
        return ""

    def count_mark(self, row: str, column: str) -> str:
        return f" {COUNT_MARK}" if self.count_note(row, column) else ""

    def at(self, frame: str, row: str, column: str) -> Any:
        """``table.<frame>.at[row, column]`` (frame: value, low, high, n, best, delta), read from numpy arrays:
        the same numpy scalar, without ``.at``'s cost per call (the renderers read every cell several times)."""
        return self._cells[frame][self._row_index[row], self._column_index[column]]

    @cached_property
    def _cells(self) -> dict[str, Any]:
        frames = {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "best": self.best}
        if self.delta is not None:
            frames["delta"] = self.delta
        return {name: frame.to_numpy() for name, frame in frames.items()}

    @cached_property
    def _row_index(self) -> dict[str, int]:
        return {row: i for i, row in enumerate(self.value.index)}

    @cached_property
    def _column_index(self) -> dict[str, int]:
        return {column: i for i, column in enumerate(self.value.columns)}


def _resolve_baseline(name: str | None, runs: list[str], references: list[str]) -> tuple[str | None, str | None]:
    """(kind, name) of ``--baseline``: an exact run label, an exact paper row (``paper:NAME`` forces the paper),
    then a unique prefix of either; case does not matter."""
    if not name:
        return None, None
    if name.lower().startswith(PAPER_PREFIX):
        return FROM_PAPER, resolve_name(name[len(PAPER_PREFIX) :], reference_names())
    lowered = name.lower()
    for kind, candidates in ((FROM_RUN, runs), (FROM_PAPER, reference_names())):
        exact = [c for c in candidates if c == name] or [c for c in candidates if c.lower() == lowered]
        if len(exact) == 1:
            return kind, exact[0]
    all_names = runs + [n for n in reference_names() if n not in runs]
    resolved = resolve_name(name, all_names)
    return (FROM_RUN if resolved in runs else FROM_PAPER), resolved


def build_table1(
    loaded: Loaded,
    references: list[str],
    baseline: str | None,
    citation: Citation,
    count_notes: Sequence[CountNote] = (),
) -> Table1:
    run_labels = loaded.labels
    kind, base_name = _resolve_baseline(baseline, run_labels, references)
    references = list(references)
    if kind == FROM_PAPER and base_name not in references:
        references.append(base_name)
    run_tasks = loaded.run_tasks
    extra_columns: list[str] = []
    labels = {b.column: b.label for b in TABLE1_COLUMN_INFO}
    labels[AVG] = AVG
    if len(run_tasks):
        order = {task: i for i, task in enumerate(order_tasks(run_tasks["task"].unique()))}
        extras = run_tasks[~run_tasks["column"].isin(TABLE1_COLUMNS)]
        for r in sorted(extras.itertuples(), key=lambda r: order[r.task]):
            if r.column not in labels:
                extra_columns.append(r.column)
                labels[r.column] = str(r.label)
    columns = [*TABLE1_COLUMNS, AVG, *extra_columns]

    rows: list[str] = []
    sources: list[str] = []
    values: dict[str, dict[str, float]] = {}
    lows: dict[str, dict[str, float]] = {}
    highs: dict[str, dict[str, float]] = {}
    ns: dict[str, dict[str, float]] = {}
    averages: dict[str, Average] = {}

    def add_row(name: str, source: str, cells: dict[str, tuple[float, float | None]], published_avg: float | None):
        rows.append(name)
        sources.append(source)
        row_v, row_l, row_h, row_n = {}, {}, {}, {}
        for column, (p, n) in cells.items():
            row_v[column] = p
            row_n[column] = float(n) if n else math.nan
            row_l[column], row_h[column] = wilson_interval(p, n)
        average = averages[name] = table1_average({column: p for column, (p, _) in cells.items()})
        present = average.columns
        if average.exists:
            _, low, high = mean_of_proportions([cells[c][0] for c in present], [cells[c][1] for c in present])
            mean = average.value
            if published_avg is not None and not math.isnan(published_avg):
                low, high = low + (published_avg - mean), high + (published_avg - mean)
                mean = published_avg
            row_v[AVG], row_l[AVG], row_h[AVG] = mean, low, high
            row_n[AVG] = sum(cells[c][1] or 0 for c in present) or math.nan
        values[name], lows[name], highs[name], ns[name] = row_v, row_l, row_h, row_n

    for label in run_labels:
        part = run_tasks[run_tasks["run"] == label] if len(run_tasks) else run_tasks
        cells = {
            str(r.column): (float(r.acc), r.n if r.n is not None and not pd.isna(r.n) else None)
            for r in part.itertuples()
        }
        add_row(label, FROM_RUN, cells, None)

    table = reference_table().set_index("model")
    notes = []
    shown_references: dict[str, str] = {}
    for name in references:
        reference = table.loc[name]
        cells = {c: (float(reference[c]), by_column(c).size) for c in TABLE1_COLUMNS}
        display = f"{name} (paper)" if name in run_labels else name
        shown_references[display] = name
        if kind == FROM_PAPER and name == base_name:
            base_name = display
        add_row(display, FROM_PAPER, cells, float(reference[AVG]))
    if any(s == FROM_PAPER for s in sources):
        notes.append(
            f"Rows marked † are published figures ({citation.source}); their confidence intervals assume the "
            "full benchmark sizes."
        )

    frame = lambda data: pd.DataFrame.from_dict(data, orient="index").reindex(index=rows, columns=columns)  # noqa: E731
    value, low, high, n = frame(values), frame(lows), frame(highs), frame(ns)
    value = value.astype(float)
    rounded = (value * 100).round(2)
    best = rounded.eq(rounded.max(axis=0, skipna=True), axis=1) & rounded.notna()
    delta = None
    if base_name is not None:
        delta = value.sub(value.loc[base_name], axis=1)
    if any(average.partial for average in averages.values()):
        notes.append("* Avg over the benchmarks this run evaluated, not all ten.")
    counts = {(note.run, note.column): note for note in count_notes if note.run in run_labels}
    if counts:
        per_run: dict[str, list[str]] = {}
        for note in counts.values():
            per_run.setdefault(note.run, []).append(note.line)
        notes.append(
            f"{COUNT_MARK} Scored on other documents than the paper's: "
            + "; ".join(f"{run}: {', '.join(lines)}" for run, lines in per_run.items())
            + "."
        )
    return Table1(
        rows=rows,
        sources=sources,
        columns=columns,
        labels=labels,
        value=value,
        low=low.astype(float),
        high=high.astype(float),
        n=n.astype(float),
        best=best,
        delta=delta,
        baseline=base_name,
        averages=averages,
        citation=citation,
        notes=notes,
        counts=counts,
        references=shown_references,
    )


