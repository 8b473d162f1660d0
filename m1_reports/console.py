"""Console output of the command: a progress bar while reading, the protocol header and a summary table (rich)."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from m1_reports.deviations import ProtocolHeader
from m1_reports.document_counts import COUNT_MARK
from m1_reports.formatting import pct
from m1_reports.protocol import INFO
from m1_reports.table1 import FROM_PAPER, Table1


class RichProgress:
    """A :class:`~m1_reports.join.ProgressSink` drawing a rich progress bar over the bytes of sample files."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task = None

    def start(self, total_bytes: int) -> None:
        self._progress = Progress(
            TextColumn("reading samples"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("read", total=max(total_bytes, 1))

    def advance(self, n_bytes: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n_bytes)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def summary_table(table: Table1) -> Table:
    """Table 1 for the terminal, transposed to fit: one row per benchmark, one column per run (and the
    baseline when it is a published row); accuracy (%) with the difference to the baseline in points."""
    shown = [row for row, source in zip(table.rows, table.sources, strict=True) if source != FROM_PAPER]
    if table.baseline is not None and table.baseline not in shown:
        shown.append(table.baseline)
    summary = Table(title="Table 1: accuracy (%)", header_style="bold")
    summary.add_column("benchmark")
    for row in shown:
        header = escape(row) + (" (baseline)" if row == table.baseline else "")
        summary.add_column(header, justify="right", overflow="fold")
    for column in table.columns:
        if all(math.isnan(table.at("value", row, column)) for row in shown):
            continue
        cells = [escape(table.labels[column])]
        for row in shown:
            value = table.at("value", row, column)
            text = pct(value)
            if table.at("best", row, column):
                text = f"[bold]{text}[/]"
            if table.delta is not None and row != table.baseline and not math.isnan(value):
                delta = 100 * table.at("delta", row, column)
                if not math.isnan(delta):
                    color = "green" if delta > 0.005 else "red" if delta < -0.005 else "dim"
                    text += f" [{color}]{delta:+.1f}[/]"
            if table.count_note(row, column):
                text += f" [yellow]{COUNT_MARK}[/]"
            cells.append(text)
        summary.add_row(*cells)
    return summary


def protocol_summary(header: ProtocolHeader) -> Group:
    """The protocol header for the terminal, transposed to fit (one row per field, one column per set of runs that
    differ only in the sweep's axes; what can move a score in yellow with ⚠), then each difference from the paper's
    once with its runs (notes dim), the differences between runs, the budget-forcing note, the document counts and
    the published rows' notes."""
    rows = header.grouped_rows()
    table = Table(title="Protocol (⚠ differs from the paper's in a way that can move a score)", header_style="bold")
    table.add_column("")
    for row in rows:
        table.add_column(escape(header.runs_text(row.runs)), overflow="fold")
    for key, label in header.fields:
        cells = [label]
        for row in rows:
            text = escape(row.cells[key])
            cells.append(f"[yellow]⚠ {text}[/]" if key in row.flagged else text)
        table.add_row(*cells)
    parts: list[object] = [table, Text(f"The paper's: {header.paper.text}.", style="dim")]
    for label, values in header.axes():
        parts.append(Text(f"  sweep axis: {label} {', '.join(values)}"))
    for group in header.deviation_groups():
        style = "dim" if group.level == INFO else "yellow"
        note = " (note)" if group.level == INFO else ""
        parts.append(Text(f"  {header.runs_text(group.runs)}: {group.message}{note}", style=style))
    if header.differences:
        parts.append(Text("  the runs differ in: " + ", ".join(d.label for d in header.differences)))
    if header.forcing_note:
        parts.append(Text(header.forcing_note, style="dim"))
    for count in header.count_groups():
        parts.append(Text(f"  {COUNT_MARK} {header.runs_text(count.runs)}: {'; '.join(count.lines)}", style="yellow"))
    for names, note in header.grouped_reference_notes():
        parts.append(Text(f"  {', '.join(names)} (published): {note}", style="dim"))
    return Group(*parts)
