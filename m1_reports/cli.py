"""The ``m1-report`` command (also ``python -m m1_reports``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from m1_eval.errors import M1UserError, ReportInputError

# lm-eval's --verbosity levels (Python's logging level names)
VERBOSITY_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

DESCRIPTION = """\
Compare lm-eval runs of medical reasoning models the way the m1 paper (arXiv 2504.00869) did.

Reads lm-eval 0.4.13 output folders (--output_path ... --log_samples): results_<date>.json,
samples_<task>_<date>.jsonl and, for the m1 models, m1_generations_<task>_<date>.jsonl.  Each results
file is one run.  Writes one folder (atomically): table1.md/.csv/.tex and a self-contained index.html
(Table 1 beside HuatuoGPT-o1 / UltraMedical / m1 rows of the paper, best per column, deltas against
--baseline, 95 % confidence intervals), paired.csv/.md (paired bootstrap and exact McNemar per task),
budget_scaling.png/.svg/.csv (accuracy against thinking budget, tokens, budget hits, ignore rounds),
scoring.csv/.md (acc next to acc_strict and no_answer), samples.html (wrong and unanswered samples,
with the m1 scorer's extraction and rule), protocol.md/.csv (each run's protocol, flagged against the
paper's and between runs; also at the top of index.html and table1.md), leaderboard.json/.csv (one row
per run), runs.csv and run_tasks.csv.  Cells scored on other documents than the paper's are marked ‡."""

EPILOG = """\
examples:
  m1-report out/run_a out/run_b --baseline HuatuoGPT-o1-8B
      two runs beside the paper's HuatuoGPT-o1 / UltraMedical / m1 rows, deltas against HuatuoGPT-o1-8B,
      written to reports/<run labels>/
  m1-report out/m1-7B-23K --label "m1-7B-23K (ours)" --reference table1 -o reports/ours
      one run against every row of the paper's Table 1, written to reports/ours/ (-o/--output_path as in lm_eval)
  m1-report out/budget_* --reference none --name budget-sweep
      a budget sweep (one run per max_tokens_thinking): budget_scaling.png shows accuracy against budget
  m1-report out/a out/b --pair "m1-7B-23K (budget 4096)" "m1-7B-23K (budget 2048)"
      choose which runs the paired comparison puts side by side (default: every run against the
      baseline run, or against the first run)
  m1-report --list-references
      the paper's rows usable with --reference and --baseline

Runs are named from the model and its budget gen_kwargs, e.g. "m1-7B-23K (budget 4096, ignore 1)";
--label renames them (one --label per run, in the order the runs are found).  Published rows are
marked †; a run and a paper row with the same name are told apart with --baseline paper:NAME.

Options named as lm_eval names them: -o/--output_path (our --out still works), --seed, -v/--verbosity.

Exit codes: 0 written; 2 bad input or options (one line per problem on stderr, naming file and line)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m1-report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        metavar="FOLDER",
        help="lm-eval --output_path folders, their <model> subfolders, or results_<date>.json files",
    )
    parser.add_argument(
        "--label", action="append", metavar="NAME", help="name of a run (repeat: one per run, in order)"
    )
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        help="row the deltas are computed against: a run label or a paper row (e.g. HuatuoGPT-o1-8B, "
        "paper:m1-7B-23K); a unique prefix is enough",
    )
    parser.add_argument(
        "--reference",
        action="append",
        metavar="PATTERN",
        help="paper rows to show: a name, a pattern (UltraMedical-*), table1, table2, all or none; repeatable "
        "or comma-separated (default: HuatuoGPT-o1-*, UltraMedical-*, m1-*)",
    )
    parser.add_argument(
        "--pair",
        action="append",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="paired comparison of two runs (repeatable); default: every run against the baseline run or the first run",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--name", help="write to reports/NAME/ (default: a name made of the run labels)")
    where.add_argument(
        "-o",
        "--output_path",
        "--out",
        dest="out",
        type=Path,
        metavar="DIR",
        help="write to this folder (replaced atomically); lm_eval's flag name, --out is an alias",
    )
    parser.add_argument("--title", help="title of the HTML pages")
    parser.add_argument(
        "--browser-limit",
        type=int,
        default=50,
        metavar="N",
        help="wrong/unanswered samples shown per run and task in samples.html (default 50; 0 = no browser)",
    )
    parser.add_argument("--no-html", action="store_true", help="skip index.html and samples.html")
    parser.add_argument("--no-plots", action="store_true", help="skip budget_scaling.png/.svg")
    parser.add_argument(
        "--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap (default 0)")
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="runs that evaluated different documents: warn and pair the common ones instead of failing",
    )
    parser.add_argument(
        "--allow-other-versions", action="store_true", help="read results of lm-eval versions other than 0.4.13"
    )
    parser.add_argument("--list-references", action="store_true", help="print the paper's rows and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")
    parser.add_argument(
        "-v",
        "--verbosity",
        type=str.upper,
        choices=VERBOSITY_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help="logging level, as lm_eval's: DEBUG, INFO, WARNING (default), ERROR, CRITICAL",
    )
    return parser


def _list_references() -> int:
    from m1_reports.reference import citation, reference_table
    from m1_reports.tables_text import markdown_table

    frame = reference_table()
    rows = [
        [f"{100 * v:.2f}" if isinstance(v, float) else str(v) for v in record.values()]
        for record in frame.to_dict("records")
    ]
    sys.stdout.write(f"Published rows, accuracy (%): {citation().text}\n\n")
    sys.stdout.write(markdown_table(list(frame.columns), rows, "ll" + "r" * (len(frame.columns) - 2)))
    return 0


def _error(message: str) -> None:
    sys.stderr.write(f"m1-report: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.verbosity, format="m1-report: %(levelname)s: %(message)s")
    if args.list_references:
        return _list_references()
    if not args.folders:
        parser.error("give at least one lm-eval output folder (see the examples in --help)")

    from rich.console import Console

    from m1_reports.console import RichProgress, protocol_summary, summary_table
    from m1_reports.report import ReportOptions, build_report, default_name, write_report

    console = Console(stderr=True)
    options = ReportOptions(
        labels=args.label,
        baseline=args.baseline,
        references=args.reference,
        pairs=[tuple(pair) for pair in args.pair] if args.pair else None,
        browser_limit=args.browser_limit,
        html=not args.no_html,
        plots=not args.no_plots,
        n_boot=args.bootstrap,
        seed=args.seed,
        allow_mismatch=args.allow_mismatch,
        allow_other_versions=args.allow_other_versions,
        title=args.title,
    )
    try:
        progress = None if args.quiet or not console.is_terminal else RichProgress(console)
        report = build_report(args.folders, options, progress)
        target = args.out if args.out is not None else Path("reports") / (args.name or default_name(report))
        files = write_report(report, target)
    except M1UserError as error:  # every user error of the project; an OSError while writing is one too
        for line in error.lines() if isinstance(error, ReportInputError) else [str(error)]:
            _error(line)
        return 2
    if not args.quiet:
        out = Console()
        out.print(protocol_summary(report.protocol))
        out.print(summary_table(report.table1))
        out.print(f"wrote {len(files)} files to {target}/", highlight=False)
    return 0
