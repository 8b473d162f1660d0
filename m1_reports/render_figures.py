"""The interactive figures of ``index.html`` (Plotly): the frontier of a sweep (accuracy against the tokens
generated per question, :mod:`m1_reports.frontier`) and the headline figure, side by side on the first screen.

The headline is the budget curve when the runs form a sweep (the protocol header has axes: runs that differ only
in thinking budget or ignore rounds), else Table 1's Avg as bars (runs beside the published rows), else each run's
accuracy per task.  Every figure is a Plotly figure built with ``plotly.graph_objects`` and handed to the page as
JSON (:func:`figure_json`); ``plotly.min.js``, which the ``plotly`` package ships, draws it from the report folder
(no network).  Values show on hover; a menu picks Avg or one task.

Text from files (run labels, task names) goes into a figure HTML-escaped (:func:`plot_label`): Plotly reads a few
tags in its texts (``<b>``, ``<br>``, ``<a>``) and decodes entities, so an escaped ``<script>`` is shown as text.
The static ``budget_scaling.png`` / ``.svg`` stay :mod:`m1_reports.render_plots`' (matplotlib).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from m1_reports.columns import AVG, benchmark, column_label, order_columns, order_tasks
from m1_reports.deviations import ProtocolHeader
from m1_reports.formatting import one_line
from m1_reports.frontier import (
    STRATEGIES,
    STRATEGY_BUDGET,
    STRATEGY_MAJORITY,
    STRATEGY_WAIT,
    frontier_line,
    legend_name,
    mixed_samples,
)
from m1_reports.stats import wilson_interval
from m1_reports.table1 import FROM_PAPER, Table1

PLOTLY_FILE = "plotly.min.js"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22")  # fmt: skip
PAPER_COLOR = "#b8bec9"
SWEEP, AVG_BARS, TASK_BARS = "sweep", "avg-bars", "task-bars"
MAX_BARS = 20  # rows of the Avg bars (the first screen keeps Table 1 in view)


def figures_available() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def plotly_js() -> str:
    """The plotly.js bundle of the installed ``plotly`` package (written beside the pages)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def plot_label(value: object) -> str:
    """Text from a file as Plotly text: one line, HTML-escaped (shown literally, never markup)."""
    return html.escape(one_line(value), quote=False)


def figure_json(figure: Any) -> str:
    """A figure as JSON that can sit inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` as
    ``\\u`` escapes, so no text can end the element."""
    text = json.dumps(figure.to_plotly_json(), ensure_ascii=False, allow_nan=False, default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


@dataclass
class Figure:
    """A figure for the page: its id, what it shows (one line), and its JSON."""

    id: str
    caption: str
    spec: str


def _layout(**extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "template": "none",
        "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12, "color": "#1f2430"},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.22, "x": 0, "font": {"size": 11}},
        "height": 360,
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
    }
    layout.update(extra)
    return layout


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": "#e6e9ef", "zeroline": False, "linecolor": "#9aa3b2", **extra}


def _finite(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not pd.isna(value)


# --------------------------------------------------------------------------------------------- the sweep


def _panels(points: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, label) of the panels: Avg (when a run has it) and every benchmark column with a point, in the
    report's order; the tasks of one column (``m1_medqa`` and ``m1_medqa_k8`` of other runs) are one panel."""
    pairs = list(zip(points["task"], points["column"], strict=True))
    return [
        (column, column_label(column, [task for task, c in pairs if c == column])) for column in order_columns(pairs)
    ]


def _panel_title(label: str) -> str:
    return "Avg over the Table 1 benchmarks" if label == AVG else plot_label(label)


def sweep_figure(budget: pd.DataFrame) -> Any | None:
    """Accuracy (%) against the thinking budget, one line per series (model and ignore rounds), 95 % Wilson
    intervals; a menu picks the panel (Avg or a task).  None without points."""
    import plotly.graph_objects as go

    x = "budget_x"
    points = budget.dropna(subset=[x, "acc"]) if len(budget) else budget
    if points.empty:
        return None
    panels = _panels(points)
    series = list(dict.fromkeys(points["series"]))
    figure = go.Figure()
    bounds = [0]  # panel i's traces are bounds[i] .. bounds[i + 1]
    for index, (panel, _) in enumerate(panels):
        part = points[points["column"] == panel]
        for number, name in enumerate(series):
            line = part[part["series"] == name].sort_values(x)
            if line.empty:
                continue
            low, high = zip(*(wilson_interval(a, n) for a, n in zip(line["acc"], line["n"], strict=True)), strict=True)
            y = [100 * a for a in line["acc"]]
            figure.add_trace(
                go.Scatter(
                    x=list(line[x]),
                    y=y,
                    mode="lines+markers",
                    name=plot_label(name),
                    legendgroup=plot_label(name),
                    marker={"size": 8, "color": COLORS[number % len(COLORS)]},
                    line={"width": 2, "color": COLORS[number % len(COLORS)]},
                    error_y=_error_bars(y, low, high, COLORS[number % len(COLORS)]),
                    customdata=[
                        [
                            plot_label(r.run),
                            plot_label(r.budget),
                            "–" if not _finite(r.thinking_tokens_mean) else f"{r.thinking_tokens_mean:.1f}",
                            "–" if not _finite(r.budget_hit_share) else f"{100 * r.budget_hit_share:.1f} %",
                            "" if not _finite(lo) else f"[{100 * lo:.1f}, {100 * hi:.1f}]",
                            "–" if not _finite(r.n) else str(int(r.n)),
                        ]
                        for r, lo, hi in zip(line.itertuples(), low, high, strict=True)
                    ],
                    hovertemplate="<b>%{customdata[0]}</b><br>thinking budget %{customdata[1]}<br>accuracy "
                    "%{y:.2f} % %{customdata[4]} (n %{customdata[5]})<br>thinking tokens used (mean) "
                    "%{customdata[2]}<br>hit the budget %{customdata[3]}<extra></extra>",
                    visible=index == 0,
                    showlegend=True,
                )
            )
        bounds.append(len(figure.data))
    budgets = sorted(set(points["budget_x"]))
    xaxis = _axis("thinking budget (tokens)")
    if budgets and budgets[-1] / max(budgets[0], 1) >= 8:
        xaxis.update(type="log", tickvals=budgets, ticktext=[f"{b:g}" for b in budgets])
    elif budgets and len(budgets) <= 10:
        xaxis.update(tickvals=budgets, ticktext=[f"{b:g}" for b in budgets])
    layout = _layout(
        xaxis=xaxis,
        yaxis=_axis("accuracy (%)", ticksuffix=""),
        title={"text": _panel_title(panels[0][1]), "x": 0.01, "font": {"size": 14}},
    )
    _panel_menu(layout, panels, bounds, len(figure.data))
    figure.update_layout(**layout)
    return figure


def _panel_menu(
    layout: dict[str, Any], panels: Sequence[tuple[str, str]], bounds: Sequence[int], count: int, prefix: str = ""
) -> None:
    """A menu that shows one panel's traces (``bounds[i]`` .. ``bounds[i + 1]``) and its title (after
    ``prefix``), when there are several panels (:func:`_panels`)."""
    if len(panels) < 2:
        return
    masks = [[bounds[i] <= t < bounds[i + 1] for t in range(count)] for i in range(len(panels))]
    layout["updatemenus"] = [
        {
            "type": "dropdown",
            "x": 1,
            "xanchor": "right",
            "y": 1.16,
            "yanchor": "top",
            "showactive": True,
            "buttons": [
                {
                    "label": "Avg" if label == AVG else plot_label(label),
                    "method": "update",
                    "args": [{"visible": mask}, {"title.text": prefix + _panel_title(label)}],
                }
                for (_, label), mask in zip(panels, masks, strict=True)
            ],
        }
    ]


# --------------------------------------------------------------------------------------------- the frontier


STRATEGY_COLORS = {STRATEGY_BUDGET: COLORS[0], STRATEGY_WAIT: COLORS[4], STRATEGY_MAJORITY: COLORS[2]}
FRONTIER_COLOR = "#1f2430"
FRONTIER_TITLE = "Frontier: "


def strategy_color(strategy: str, strategies: Sequence[str]) -> str:
    """A strategy's colour: its own for the known ones, else the next free one in ``strategies``' order."""
    if strategy in STRATEGY_COLORS:
        return STRATEGY_COLORS[strategy]
    free = [c for c in COLORS if c not in STRATEGY_COLORS.values()]
    others = [s for s in strategies if s not in STRATEGY_COLORS]
    return free[others.index(strategy) % len(free)] if strategy in others else free[0]


def _setting_text(r: Any) -> str:
    parts = [f"budget {r.budget}" if _finite(r.budget) else "no forcing"]
    if r.ignore:
        parts.append(f"{int(r.ignore)} Wait round{'s' if int(r.ignore) != 1 else ''}")
    if r.strategy == STRATEGY_MAJORITY and _finite(r.k):
        k = int(r.k)
        parts.append(f"k = {k} (majority of {k} samples)" if k > 1 else "k = 1 (one sample)")
    elif _finite(r.k) and int(r.k) > 1:
        parts.append(f"majority of {int(r.k)}")
    elif _finite(r.samples_per_question) and r.samples_per_question > 1:
        parts.append(f"one sample (acc: the mean of {r.samples_per_question:g})")
    return ", ".join(parts)


def _error_bars(y: Sequence[float], low: Sequence[float], high: Sequence[float], color: str) -> dict[str, Any]:
    """Plotly's asymmetric error bars of values ``y`` (%) with interval bounds ``low``/``high`` (fractions)."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [100 * h - v if _finite(h) else 0 for h, v in zip(high, y, strict=True)],
        "arrayminus": [v - 100 * lo if _finite(lo) else 0 for lo, v in zip(low, y, strict=True)],
        "thickness": 1,
        "width": 3,
        "color": color,
    }


def frontier_figure(points: pd.DataFrame) -> Any | None:
    """Accuracy (%) against the mean tokens generated per question (:func:`m1_reports.frontier.frontier_table`):
    one line per strategy curve (a colour per strategy), 95 % intervals, the Pareto frontier ringed and joined; a
    menu picks the panel (Avg first, then each task).  None without points."""
    import plotly.graph_objects as go

    if points.empty:
        return None
    panels = _panels(points)
    strategies = sorted(set(points["strategy"]), key=lambda s: (STRATEGIES.index(s) if s in STRATEGIES else 99, s))
    models = list(dict.fromkeys(points["model"]))
    mixed = mixed_samples(points)
    figure = go.Figure()
    bounds = [0]
    for index, (panel, _) in enumerate(panels):
        part = points[points["column"] == panel]
        shown: set[str] = set()
        for strategy in strategies:
            color = strategy_color(strategy, strategies)
            for (model, _), line in part[part["strategy"] == strategy].groupby(["model", "curve"], sort=False):
                name = legend_name(strategy, line["samples_per_question"].max(), mixed)
                group = plot_label(f"{model}: {name}" if len(models) > 1 else name)
                y = [100 * a for a in line["accuracy"]]
                figure.add_trace(
                    go.Scatter(
                        x=list(line["mean_tokens_per_question"]),
                        y=y,
                        mode="lines+markers",
                        name=group,
                        legendgroup=group,
                        showlegend=group not in shown,
                        marker={"size": 7, "color": color},
                        line={"width": 2, "color": color, "dash": "solid" if name == strategy else "dash"},
                        error_y=_error_bars(y, line["ci_low"], line["ci_high"], color),
                        customdata=[
                            [
                                plot_label(r.run),
                                plot_label(f"{r.strategy}: {_setting_text(r)}"),
                                "" if not _finite(r.ci_low) else f"[{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]",
                                "–" if not _finite(r.n) else str(int(r.n)),
                                f"{r.mean_tokens_per_question:.1f}",
                                "<br>on the Pareto frontier" if r.on_frontier else "",
                            ]
                            for r in line.itertuples()
                        ],
                        hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<br>accuracy %{y:.2f} % "
                        "%{customdata[2]} (n %{customdata[3]})<br>tokens per question (mean) %{customdata[4]}"
                        "%{customdata[5]}<extra></extra>",
                        visible=index == 0,
                    )
                )
                shown.add(group)
        best = frontier_line(part)
        figure.add_trace(
            go.Scatter(
                x=list(best["mean_tokens_per_question"]),
                y=[100 * a for a in best["accuracy"]],
                mode="lines+markers",
                name="Pareto frontier",
                legendgroup="frontier",
                marker={"size": 14, "symbol": "circle-open", "color": FRONTIER_COLOR, "line": {"width": 2}},
                line={"width": 1.2, "dash": "dot", "color": FRONTIER_COLOR},
                hoverinfo="skip",
                visible=index == 0,
            )
        )
        bounds.append(len(figure.data))
    tokens = [t for t in points["mean_tokens_per_question"] if _finite(t) and t > 0]
    xaxis = _axis("tokens generated per question (mean: thinking + answer)")
    if tokens and max(tokens) / min(tokens) >= 8:
        xaxis.update(type="log")
    layout = _layout(
        xaxis=xaxis,
        yaxis=_axis("accuracy (%)"),
        title={"text": FRONTIER_TITLE + _panel_title(panels[0][1]), "x": 0.01, "font": {"size": 14}},
    )
    _panel_menu(layout, panels, bounds, len(figure.data), FRONTIER_TITLE)
    figure.update_layout(**layout)
    return figure


# -------------------------------------------------------------------------------------------- the bars


def avg_bars_figure(table: Table1) -> Any | None:
    """Table 1's Avg (%) as horizontal bars with their 95 % intervals, best on top: the runs in colour, the
    published rows in grey (``*``: over fewer than the ten benchmarks).  None when no run has an Avg."""
    import plotly.graph_objects as go

    rows = []
    for row, source in zip(table.rows, table.sources, strict=True):
        value = table.at("value", row, AVG)
        if _finite(value):
            rows.append((row, source, float(value), table.at("low", row, AVG), table.at("high", row, AVG)))
    if not any(source != FROM_PAPER for _, source, *_ in rows):
        return None
    left_out = 0
    if len(rows) > MAX_BARS:  # the runs and the baseline always; then the published rows with the highest Avg
        must = [r for r in rows if r[1] != FROM_PAPER or r[0] == table.baseline]
        others = sorted((r for r in rows if r not in must), key=lambda r: -r[2])[: max(0, MAX_BARS - len(must))]
        left_out = len(rows) - len(must) - len(others)
        rows = must + others
    rows.sort(key=lambda r: r[2])
    names = [plot_label(r[0]) + (" †" if r[1] == FROM_PAPER else "") + (" *" if table.is_partial_avg(r[0]) else "")
             for r in rows]  # fmt: skip
    figure = go.Figure(
        go.Bar(
            x=[100 * r[2] for r in rows],
            y=names,
            orientation="h",
            marker={"color": [PAPER_COLOR if r[1] == FROM_PAPER else COLORS[0] for r in rows]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [100 * (r[4] - r[2]) if _finite(r[4]) else 0 for r in rows],
                "arrayminus": [100 * (r[2] - r[3]) if _finite(r[3]) else 0 for r in rows],
                "thickness": 1,
                "color": "#5b6372",
            },
            customdata=[["" if not _finite(r[3]) else f"[{100 * r[3]:.1f}, {100 * r[4]:.1f}]"] for r in rows],
            hovertemplate="<b>%{y}</b><br>Avg %{x:.2f} % %{customdata[0]}<extra></extra>",
        )
    )
    title = "Table 1 Avg († published, * fewer than ten benchmarks)"
    if left_out:
        title += f"; {left_out} published row{'s' if left_out != 1 else ''} with a lower Avg only in Table 1"
    figure.update_layout(
        **_layout(
            height=min(460, max(220, 18 * len(rows) + 90)),
            xaxis=_axis("Avg accuracy over the Table 1 benchmarks (%)"),
            yaxis={"automargin": True, "tickfont": {"size": 10}},
            title={"text": title, "x": 0.01, "font": {"size": 14}},
            showlegend=False,
        )
    )
    return figure


def task_bars_figure(run_tasks: pd.DataFrame, labels: Sequence[str]) -> Any | None:
    """Each run's accuracy (%) per task as grouped bars (runs without a Table 1 benchmark)."""
    import plotly.graph_objects as go

    if run_tasks.empty:
        return None
    tasks = order_tasks(run_tasks["task"].unique())
    figure = go.Figure()
    for number, label in enumerate(labels):
        part = run_tasks[run_tasks["run"] == label].set_index("task")
        present = [t for t in tasks if t in part.index]
        figure.add_trace(
            go.Bar(
                x=[plot_label(benchmark(t).label) for t in present],
                y=[100 * float(part.at[t, "acc"]) for t in present],
                name=plot_label(label),
                marker={"color": COLORS[number % len(COLORS)]},
                hovertemplate=f"<b>{plot_label(label)}</b><br>%{{x}}: %{{y:.2f}} %<extra></extra>",
            )
        )
    figure.update_layout(**_layout(barmode="group", yaxis=_axis("accuracy (%)"), xaxis=_axis("")))
    return figure


# ------------------------------------------------------------------------------------------ for the page


def headline(
    header: ProtocolHeader, budget: pd.DataFrame, table: Table1, run_tasks: pd.DataFrame, labels: Sequence[str]
) -> tuple[str, Figure | None]:
    """(kind, figure) of the first screen: :data:`SWEEP` (the budget curve), :data:`AVG_BARS` or
    :data:`TASK_BARS`."""
    if header.axes():
        figure = sweep_figure(budget)
        if figure is not None:
            lines = "model and ignore-rounds setting"
            if header.samples:
                lines = "model, ignore-rounds setting and samples per question (acc: the mean over the K samples)"
            caption = (
                f"Accuracy against thinking budget: one line per {lines}; bars are 95 % Wilson intervals. Hover a "
                "point for its run, tokens used and budget hits."
            )
            return SWEEP, Figure("figure-headline", caption, figure_json(figure))
    figure = avg_bars_figure(table)
    if figure is not None:
        caption = "Table 1's Avg with 95 % intervals, the runs beside the paper's published rows (grey)."
        return AVG_BARS, Figure("figure-headline", caption, figure_json(figure))
    figure = task_bars_figure(run_tasks, labels)
    if figure is not None:
        return TASK_BARS, Figure("figure-headline", "Accuracy per task and run.", figure_json(figure))
    return TASK_BARS, None


def frontier(points: pd.DataFrame) -> Figure | None:
    """The frontier figure of a sweep (:func:`m1_reports.frontier.frontier_table`'s points); None without one."""
    figure = frontier_figure(points)
    if figure is None:
        return None
    caption = (
        "Accuracy against the tokens generated per question (thinking + answer of every sample, mean over the "
        "questions), one line per strategy: budget (increasing budgets, no Wait rounds) and Wait rounds (one "
        "budget, increasing rounds). Ringed: the Pareto frontier, the settings that no other beats with higher "
        "accuracy and fewer tokens. Bars: 95 % intervals; hover a point for its setting."
    )
    if STRATEGY_MAJORITY in set(points["strategy"]):
        caption += (
            " Runs of K samples per question: budget and Wait rounds at one sample's tokens (their acc is the mean "
            "over the K samples" + ("; dashed beside the one-sample runs'" if mixed_samples(points) else "") + "), "
            "maj@k (the majority vote of k samples, k = 1 .. K, one line per setting) at k samples' tokens."
        )
    return Figure("figure-frontier", caption, figure_json(figure))
