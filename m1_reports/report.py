"""A report: read the runs, build every table, and write the folder (atomically): which file comes from which
renderer (:mod:`m1_reports.render_text`, :mod:`m1_reports.render_csv`, :mod:`m1_reports.render_html`,
:mod:`m1_reports.render_plots`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from m1_base.errors import ReportInputError
from m1_reports import render_figures, render_html, render_plots
from m1_reports.deviations import ProtocolHeader, compare
from m1_reports.document_counts import CountNote, count_notes, log_count_notes
from m1_reports.frontier import frontier_table, missing_note
from m1_reports.join import Loaded, LoadOptions, ProgressSink, load
from m1_reports.naming import short_model_name
from m1_reports.read_results import RunInfo
from m1_reports.reference import Citation, citation, select_references
from m1_reports.render_csv import PARALLEL_SAMPLES_FILE, csv_text, leaderboard_frame, protocol_frame, table1_frame
from m1_reports.render_text import (
    budget_markdown,
    leaderboard_json,
    paired_markdown,
    protocol_markdown,
    scoring_markdown,
    table1_latex,
    table1_markdown,
)
from m1_reports.stats import DEFAULT_BOOTSTRAP
from m1_reports.table1 import Table1, build_table1
from m1_reports.tables import (
    budget_table,
    default_pairs,
    leaderboard_rows,
    paired_table,
    parallel_samples_table,
    scoring_table,
)
from m1_reports.write_folder import atomic_directory, check_output, write_text

logger = logging.getLogger(__name__)


@dataclass
class ReportOptions:
    labels: Sequence[str] | None = None
    baseline: str | None = None
    references: Sequence[str] | None = None  # None: the default reference rows
    pairs: Sequence[tuple[str, str]] | None = None  # None: every run against the baseline run (or the first)
    browser_limit: int = 50
    html: bool = True
    plots: bool = True
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0
    allow_mismatch: bool = False
    allow_other_versions: bool = False
    title: str | None = None


@dataclass
class Report:
    loaded: Loaded
    table1: Table1
    paired: pd.DataFrame
    budget: pd.DataFrame
    scoring: pd.DataFrame
    leaderboard: list[dict[str, Any]]
    frontier: pd.DataFrame  # a sweep's points and Pareto frontier (m1_reports.frontier); empty without a sweep
    parallel_samples: pd.DataFrame  # maj@k and pass@k of the K-sample runs; empty without one
    citation: Citation
    options: ReportOptions
    title: str
    protocol: ProtocolHeader
    counts: list[CountNote] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    output: Path | None = None  # the output folder build_report checked (its ``output`` argument)

    @property
    def run_folders(self) -> list[Path]:
        """The folders of the runs read (their results files'): the report's output stays out of them."""
        return [run.files.folder for run in self.loaded.runs]


# The output folder, or how to name it from the run labels (m1-report's default: reports/<run labels>/).
Output = Path | Callable[[Sequence[str]], Path]


def build_report(
    paths: Iterable[Path | str],
    options: ReportOptions | None = None,
    progress: ProgressSink | None = None,
    *,
    output: Output | None = None,
) -> Report:
    """Read the runs and build every table.  ``output``: the folder the report will be written to (or a function
    of the run labels giving it), checked (:func:`m1_reports.write_folder.check_output`) once the results files are
    read and before any samples file is: a folder that holds or lies in a run read, a symbolic link or a folder
    with files m1-report did not write is refused before the long part.  It is ``Report.output``."""
    options = options or ReportOptions()
    if options.browser_limit < 0:
        raise ReportInputError("--browser-limit must be 0 or more")
    if options.n_boot < 100:
        raise ReportInputError("--bootstrap must be at least 100", hint="10000 is the default")
    if options.seed < 0:
        raise ReportInputError("--seed must be 0 or more (a whole number)")
    chosen: list[Path] = []

    def check_runs(runs: list[RunInfo]) -> None:
        target = output([run.label for run in runs]) if callable(output) else Path(output)  # type: ignore[arg-type]
        check_output(target, [run.files.folder for run in runs])
        chosen.append(target)

    references = select_references(options.references)
    loaded = load(
        paths,
        LoadOptions(
            labels=options.labels,
            browser_limit=options.browser_limit if options.html else 0,
            allow_mismatch=options.allow_mismatch,
            allow_other_versions=options.allow_other_versions,
            check_runs=check_runs if output is not None else None,
        ),
        progress,
    )
    cite = citation()
    run_tasks = loaded.run_tasks
    columns = (
        {(str(r.run), str(r.task)): str(r.column) for r in run_tasks[["run", "task", "column"]].itertuples()}
        if len(run_tasks)
        else {}
    )
    counts = count_notes(loaded.runs, columns)
    log_count_notes(counts)
    table1 = build_table1(loaded, references, options.baseline, cite, counts)
    header = compare(loaded, counts, table1.reference_names)
    baseline_run = table1.baseline if table1.baseline in loaded.labels else None
    if options.pairs is not None:
        pairs = [tuple(pair) for pair in options.pairs]
    else:
        pairs = default_pairs(loaded.labels, baseline_run) if len(loaded.labels) > 1 else []
    paired = paired_table(loaded, pairs, n_boot=options.n_boot, seed=options.seed)  # type: ignore[arg-type]
    title = options.title or default_title(loaded)
    return Report(
        loaded=loaded,
        table1=table1,
        paired=paired,
        budget=budget_table(loaded),
        scoring=scoring_table(loaded),
        leaderboard=leaderboard_rows(loaded),
        frontier=frontier_table(loaded, header),
        parallel_samples=parallel_samples_table(loaded),
        citation=cite,
        options=options,
        title=title,
        protocol=header,
        counts=counts,
        warnings=list(loaded.warnings),
        output=chosen[0] if chosen else None,
    )


def default_title(loaded: Loaded) -> str:
    """``m1-report: <the models>`` (not every run label): ``m1-report: demo-model (10 runs)``,
    ``m1-report: m1-7B-23K, HuatuoGPT-o1-8B``; more than four models end in ``and N more``."""
    models = list(dict.fromkeys(short_model_name(run.model_name) for run in loaded.runs))
    shown = ", ".join(models[:4]) + (f" and {len(models) - 4} more" if len(models) > 4 else "")
    runs = len(loaded.runs)
    return f"m1-report: {shown or 'no runs'}" + (f" ({runs} runs)" if runs > len(models) else "")


def default_name(report: Report) -> str:
    """A folder name from the run labels: ``m1-7B-23K_budget_4096__HuatuoGPT-o1-8B``."""
    return name_of(report.loaded.labels)


def name_of(labels: Sequence[str]) -> str:
    """:func:`default_name` from the labels alone (known before the samples files are read)."""
    parts = [re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") for label in labels]
    name = "__".join(p for p in parts if p) or "report"
    return name[:80].rstrip("_.") or "report"


def write_report(report: Report, target: Path | None = None) -> list[Path]:
    """Write every output into ``target`` (default: ``report.output``) atomically; returns the files written (at
    their final place).  ``target`` is checked as :func:`build_report` checks its ``output`` (again: the
    folders may have changed since)."""
    if target is None:
        if report.output is None:
            raise ReportInputError("no output folder: pass write_report a target, or build_report an output")
        target = report.output
    options = report.options
    written: list[str] = []
    with atomic_directory(target, report.run_folders) as folder:

        def put(name: str, text: str) -> None:
            write_text(folder, name, text)
            written.append(name)

        table = report.table1
        put("table1.md", protocol_markdown(report.protocol) + "\n" + table1_markdown(table))
        put("protocol.md", protocol_markdown(report.protocol))
        put("protocol.csv", csv_text(protocol_frame(report.protocol)))
        put("table1.csv", csv_text(table1_frame(table)))
        put("table1.tex", table1_latex(table))
        put("paired.csv", csv_text(report.paired))
        put("paired.md", paired_markdown(report.paired))
        put("budget_scaling.csv", csv_text(report.budget))
        put("budget_scaling.md", budget_markdown(report.budget))
        if not report.frontier.empty:  # a sweep's (m1_reports.frontier); no sweep, no frontier files
            put("frontier.csv", csv_text(report.frontier))
        if not report.parallel_samples.empty:  # K-sample runs' maj@k and pass@k; none without such a run
            put(PARALLEL_SAMPLES_FILE, csv_text(report.parallel_samples))
        put("scoring.csv", csv_text(report.scoring))
        put("scoring.md", scoring_markdown(report.scoring))
        put("runs.csv", csv_text(report.loaded.runs_frame))
        put("run_tasks.csv", csv_text(report.loaded.run_tasks))
        put("leaderboard.json", leaderboard_json(report.leaderboard))
        put("leaderboard.csv", csv_text(leaderboard_frame(report.leaderboard)))

        svg: bytes | None = None
        frontier_svg: bytes | None = None
        plot_note = "Plots were switched off (--no-plots)."
        if options.plots:
            if render_plots.plotting_available():
                for path in render_plots.save_budget_plots(report.budget, folder):
                    written.append(path.name)
                svg = (folder / f"{render_plots.PLOT_NAME}.svg").read_bytes()
                for path in render_plots.save_frontier_plots(report.frontier, folder):
                    written.append(path.name)
                    if path.suffix == ".svg":
                        frontier_svg = path.read_bytes()
            else:
                plot_note = "No plot: matplotlib is not installed (pip install matplotlib)."
                report.warnings.append("budget_scaling.png/.svg not written: matplotlib is not installed")
                logger.warning("budget_scaling.png/.svg not written: matplotlib is not installed")
        if options.html:
            headline: tuple[str, render_figures.Figure | None] = ("", None)
            frontier = None
            if options.plots and render_figures.figures_available():
                headline = render_figures.headline(
                    report.protocol, report.budget, table, report.loaded.run_tasks, report.loaded.labels
                )
                frontier = render_figures.frontier(report.frontier)
                if headline[1] is not None or frontier is not None:
                    put(render_figures.PLOTLY_FILE, render_figures.plotly_js())
            elif options.plots:
                plot_note = "No interactive figure: plotly is not installed (pip install plotly)."
            put(render_html.SCRIPT_FILE, render_html.script_text())
            put(
                "index.html",
                render_html.render_index(
                    title=report.title,
                    loaded=report.loaded,
                    table1=table,
                    paired=report.paired,
                    budget=report.budget,
                    scoring=report.scoring,
                    parallel_samples=report.parallel_samples,
                    citation=report.citation,
                    headline=headline,
                    frontier=frontier,
                    frontier_svg=frontier_svg,
                    frontier_note=missing_note(report.loaded, report.protocol, report.frontier),
                    svg=svg,
                    plot_note=plot_note,
                    n_boot=options.n_boot,
                    browser=options.browser_limit > 0,
                    warnings=report.warnings,
                    protocol=report.protocol,
                ),
            )
            if options.browser_limit > 0:
                page, files = render_html.render_browser(
                    title=report.title, loaded=report.loaded, limit=options.browser_limit
                )
                for name, text in files.items():
                    put(name, text)
                put(render_html.BROWSER_FILE, page)
    return [target / name for name in written]
