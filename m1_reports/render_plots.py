"""The budget scaling plot: accuracy against thinking budget, per task and averaged (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from m1_reports.columns import AVG, benchmark, order_tasks
from m1_reports.formatting import one_line

PLOT_NAME = "budget_scaling"


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
    tasks = [t for t in order_tasks(set(points["task"]) - {AVG})] if len(points) else []
    # an average of one task is that task: draw it once
    averaged = len(points) > 0 and AVG in set(points["task"])
    panels = ([AVG, *tasks] if len(tasks) > 1 and averaged else tasks or [AVG]) if len(points) else []
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
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    series = list(dict.fromkeys(points["series"]))
    legend_rows = math.ceil(len(series) / min(4, len(series)))
    # A fixed layout (constrained layout costs a second per save on a 12-panel figure).
    width, height = 3.6 * ncols + 0.4, 2.9 * nrows + 1.1 + 0.24 * legend_rows
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
    colors = {name: f"C{i % 10}" for i, name in enumerate(series)}
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.axis("off")
            continue
        task = panels[index]
        part = points[points["task"] == task]
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
        axes.set_title("Average (Table 1 tasks)" if task == AVG else plot_text(benchmark(task).label), fontsize=10)
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
    handles, names = grid.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="lower center", ncols=min(4, len(names)), fontsize=8, frameon=False)
    figure.suptitle("Accuracy against thinking budget", fontsize=12)
    return figure


def save_budget_plots(budget: pd.DataFrame, folder: Path) -> list[Path]:
    """Write ``budget_scaling.png`` and ``budget_scaling.svg`` into ``folder``; reproducible bytes for the SVG."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "m1-report", "svg.fonttype": "none"}):
        figure = budget_figure(budget)
        png = folder / f"{PLOT_NAME}.png"
        svg = folder / f"{PLOT_NAME}.svg"
        figure.savefig(png, format="png", dpi=120, metadata={"Software": None})
        figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return [png, svg]
