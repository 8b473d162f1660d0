"""The static figures (matplotlib, no display needed): the budget scaling plot, accuracy against thinking budget per
task and averaged; and a sweep's frontier, accuracy against the tokens generated per question with the Pareto
frontier (:mod:`m1_reports.frontier`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from m1_reports.columns import AVG, column_label, order_columns
from m1_reports.formatting import one_line
from m1_reports.frontier import STRATEGIES, frontier_line, legend_name, mixed_samples

PLOT_NAME = "budget_scaling"
FRONTIER_NAME = "frontier"


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_text(value: object) -> str:
    """A name from a file as matplotlib text: on one line, ``$`` literal (a pair would start mathtext, and a bad
    formula stops the save), and a leading ``_`` kept visible (matplotlib hides such legend entries)."""
    text = one_line(value).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def budget_figure(budget: pd.DataFrame):
    """A matplotlib Figure (not attached to pyplot) with one panel per task and one for the average."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = budget.dropna(subset=["budget_x", "acc"]) if len(budget) else budget
    panels = _panels(points) if len(points) else []
    if not panels:
        figure = Figure(figsize=(6.4, 2.4))
        axes = figure.subplots()
        axes.axis("off")
        axes.text(
            0.5,
            0.5,
            "No runs with a thinking budget (gen_kwargs max_tokens_thinking):\nnothing to plot.",
            ha="center",
            va="center",
        )
        return figure
    series = list(dict.fromkeys(points["series"]))
    figure, grid, legend_columns = _grid(
        len(panels), [plot_text(n) for n in series], "Accuracy against thinking budget"
    )
    colors = {name: f"C{i % 10}" for i, name in enumerate(series)}
    for axes, (column, label) in zip(grid, panels, strict=True):
        part = points[points["column"] == column]
        for name in series:
            line = part[part["series"] == name].sort_values("budget_x")
            if line.empty:
                continue
            axes.plot(
                line["budget_x"],
                100 * line["acc"],
                marker="o",
                markersize=3.5,
                color=colors[name],
                label=plot_text(name),
            )
        axes.set_title(_title(label), fontsize=10)
        budgets = sorted(set(part["budget_x"]))
        if budgets and budgets[-1] / max(budgets[0], 1) >= 8:
            axes.set_xscale("log", base=2)
        if 0 < len(budgets) <= 8:
            axes.set_xticks(budgets, [f"{b:g}" for b in budgets])
            axes.minorticks_off()
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
        axes.set_xlabel("thinking budget (tokens)", fontsize=8)
        axes.set_ylabel("accuracy (%)", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    handles, names = grid[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="lower center", ncols=legend_columns, fontsize=8, frameon=False)
    return figure


def _panels(points: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, label) of the panels: Avg first (when there is one and more than one benchmark column: an average
    of one benchmark is that benchmark), then the columns; the tasks of one column (``m1_medqa`` and
    ``m1_medqa_k8`` of other runs) are one panel."""
    pairs = list(zip(points["task"], points["column"], strict=True))
    columns = order_columns(pairs)
    ordered = [column for column in columns if column != AVG]
    if not (len(ordered) > 1 and AVG in columns):
        columns = ordered or ([AVG] if AVG in columns else [])
    return [(column, column_label(column, [task for task, c in pairs if c == column])) for column in columns]


def _title(label: str) -> str:
    return "Average (Table 1 tasks)" if label == AVG else plot_text(label)


def _grid(panels: int, labels: Sequence[str], title: str, min_width: float = 0.0):
    """A figure (not attached to pyplot) with a grid of ``panels`` axes, room for a legend of ``labels`` below, and
    its title (``min_width`` inches wide at least); the axes, the unused ones switched off; the legend's columns
    (at most 4, as many of the longest label as fit the width)."""
    from matplotlib.figure import Figure

    ncols = min(4, panels)
    nrows = math.ceil(panels / ncols)
    width = max(min_width, 3.6 * ncols + 0.4)
    entry = 0.5 + 0.065 * max((len(label) for label in labels), default=0)  # inches: marker, gap, text at 8 pt
    legend_columns = max(1, min(4, len(labels), int((width - 0.2) / entry)))
    legend_rows = math.ceil(len(labels) / legend_columns)
    # A fixed layout (constrained layout costs a second per save on a 12-panel figure).
    height = 2.9 * nrows + 1.1 + 0.24 * legend_rows
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(
        left=0.7 / width,
        right=1 - 0.15 / width,
        top=1 - 0.8 / height,
        bottom=(0.75 + 0.24 * legend_rows) / height,
        hspace=0.55,
        wspace=0.3,
    )
    grid = figure.subplots(nrows, ncols, squeeze=False)
    for axes in grid.flat[panels:]:
        axes.axis("off")
    figure.suptitle(title, fontsize=12)
    return figure, list(grid.flat[:panels]), legend_columns


def frontier_figure(points: pd.DataFrame):
    """A matplotlib Figure (not attached to pyplot): one panel per task (the Table 1 average first), accuracy
    against the mean tokens generated per question, one line per strategy curve (a colour per strategy), the
    Pareto frontier ringed and joined.  ``points``: :func:`m1_reports.frontier.frontier_table` (not empty)."""
    from matplotlib.ticker import MaxNLocator

    panels = _panels(points)
    mixed = mixed_samples(points)
    strategies = sorted(set(points["strategy"]), key=lambda s: (STRATEGIES.index(s) if s in STRATEGIES else 99, s))
    models = list(dict.fromkeys(points["model"]))
    groups = [(m, s) for m in models for s in strategies if ((points["model"] == m) & (points["strategy"] == s)).any()]
    colors = {group: f"C{i % 10}" for i, group in enumerate(groups)}
    names = dict.fromkeys(
        legend_name(s, k, mixed) for s, k in zip(points["strategy"], points["samples_per_question"], strict=True)
    )
    labels = [plot_text(f"{m}: {n}" if len(models) > 1 else n) for m in models for n in names] + ["Pareto frontier"]
    figure, grid, legend_columns = _grid(len(panels), labels, "Accuracy against tokens per question", 5.0)
    handles: dict[str, object] = {}
    for axes, (column, label) in zip(grid, panels, strict=True):
        part = points[points["column"] == column]
        for (model, strategy, _), line in part.groupby(["model", "strategy", "curve"], sort=False):
            shown = legend_name(strategy, line["samples_per_question"].max(), mixed)
            name = plot_text(f"{model}: {shown}" if len(models) > 1 else shown)
            (handle,) = axes.plot(
                line["mean_tokens_per_question"], 100 * line["accuracy"], marker="o", markersize=3.5,
                color=colors[(model, strategy)], label=name, linestyle="-" if shown == strategy else "--",
            )  # fmt: skip
            handles.setdefault(name, handle)
        best = frontier_line(part)
        (handle,) = axes.plot(
            best["mean_tokens_per_question"], 100 * best["accuracy"], linestyle=":", linewidth=1, color="black",
            marker="o", markersize=8, markerfacecolor="none", markeredgewidth=1.2, label="Pareto frontier",
        )  # fmt: skip
        handles.setdefault("Pareto frontier", handle)
        axes.set_title(_title(label), fontsize=10)
        tokens = [t for t in part["mean_tokens_per_question"] if t > 0]
        if tokens and max(tokens) / min(tokens) >= 8:
            axes.set_xscale("log", base=2)
        axes.yaxis.set_major_locator(MaxNLocator(nbins=5))
        axes.set_xlabel("tokens per question (mean)", fontsize=8)
        axes.set_ylabel("accuracy (%)", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    figure.legend(
        list(handles.values()), list(handles), loc="lower center", ncols=min(legend_columns, len(handles)), fontsize=8,
        frameon=False,
    )  # fmt: skip
    return figure


def _save(figure, folder: Path, name: str) -> list[Path]:
    png = folder / f"{name}.png"
    svg = folder / f"{name}.svg"
    figure.savefig(png, format="png", dpi=120, metadata={"Software": None})
    figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return [png, svg]


def save_budget_plots(budget: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``budget_scaling.png`` and ``budget_scaling.svg`` into ``folder``; reproducible bytes for the SVG."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "m1-report", "svg.fonttype": "none"}):
        return _save(budget_figure(budget), folder, PLOT_NAME)


def save_frontier_plots(points: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``frontier.png`` and ``frontier.svg`` into ``folder`` (nothing without points: no sweep)."""
    import matplotlib

    if points.empty:
        return []
    with matplotlib.rc_context({"svg.hashsalt": "m1-report", "svg.fonttype": "none"}):
        return _save(frontier_figure(points), folder, FRONTIER_NAME)
