"""The ``m1-report`` command (also ``python -m m1_reports``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any, NoReturn

from m1_base import values
from m1_base.errors import M1UserError, ReportInputError
from m1_base.values import argparse_type

# lm-eval's --verbosity levels (Python's logging level names)
VERBOSITY_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_BOOTSTRAP = 10_000  # m1_reports.stats.DEFAULT_BOOTSTRAP (not imported here: --help stays fast; tied by a test)
MIN_BOOTSTRAP, MAX_BOOTSTRAP = 100, 1_000_000  # below: no usable interval; above: memory for nothing

DESCRIPTION = """\
Compare lm-eval runs of medical reasoning models the way the m1 paper (arXiv 2504.00869) did.

Reads lm-eval 0.4.13 output folders (--output_path ... --log_samples): results_<date>.json,
samples_<task>_<date>.jsonl and, for the m1 models, m1_generations_<task>_<date>.jsonl.  Each results
file is one run.  Writes one folder (atomically): table1.md/.csv/.tex and index.html (a summary, the
budget curve of a sweep or Table 1's Avg, then Table 1 beside HuatuoGPT-o1 / UltraMedical / m1 rows of the
paper, best per column, deltas against --baseline, 95 % confidence intervals), paired.csv/.md (paired
bootstrap and exact McNemar per task), budget_scaling.png/.svg/.csv (accuracy against thinking budget,
tokens, budget hits, ignore rounds), scoring.csv/.md (acc next to acc_strict and no_answer), samples.html
(the question browser: one question with every run's answer, the m1 scorer's extraction and rule),
protocol.md/.csv (the protocol, each difference from the paper's stated once with its runs),
leaderboard.json/.csv (one row per run), runs.csv and run_tasks.csv.  The pages work offline from the
folder (file://).  Cells scored on other documents than the paper's are marked ‡."""

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


# --------------------------------------------------------------------------------------------- flag values
# Each flag's value goes through one of m1_base.values' parsers (argparse_type): a bad value is argparse's one
# line and exit code 2, before anything is read.


def _printable(value: str, key: str, source: values.Source) -> str:
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise source.fail(key, value, "must be one line of text, without line breaks or control characters")
    return value


def display_text(value: Any, key: str, source: values.Source) -> str:
    """A name shown in the report (--label, --baseline, --pair, --title): a non-empty line of text."""
    return _printable(values.text(value, key, source) or "", key, source)  # text() returns a str here


def reference_pattern(value: Any, key: str, source: values.Source) -> str:
    """--reference: a name, a pattern, table1, table2, all or none (``none`` is a documented value here)."""
    if not isinstance(value, str) or not value.strip():
        raise source.fail(key, value, "must not be empty; e.g. --reference table1 (see --list-references)")
    return _printable(value, key, source)


def folder_name(value: Any, key: str, source: values.Source) -> str:
    """--name: one folder name under reports/ (no path separators; -o takes a path)."""
    name = display_text(value, key, source)
    separators = {"/", os.sep, os.altsep or "/"}
    if name.strip() in (".", "..") or any(sep in name for sep in separators):
        raise source.fail(key, value, "must be a folder name without path separators; give a path with -o instead")
    return name


def path(value: Any, key: str, source: values.Source) -> Path:
    """A path on the command line (a run folder, the output folder): not empty (an empty argument would read as
    the current folder)."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise source.fail(key, value, "must be a path; e.g. out/run_a")
    return Path(value)


def verbosity(value: Any, key: str, source: values.Source) -> str:
    """-v/--verbosity: one of lm_eval's levels, in any case."""
    level = value.strip().upper() if isinstance(value, str) else value
    if level in VERBOSITY_LEVELS:
        return level
    raise source.fail(key, value, f"is unknown; use one of {', '.join(VERBOSITY_LEVELS)}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the project's one line (no usage block): ``m1-report: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="m1-report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folders",
        nargs="*",
        type=argparse_type(path, "FOLDER"),
        metavar="FOLDER",
        help="lm-eval --output_path folders, their <model> subfolders, or results_<date>.json files",
    )
    parser.add_argument(
        "--label",
        action="append",
        type=argparse_type(display_text, "--label"),
        metavar="NAME",
        help="name of a run (repeat: one per run, in order)",
    )
    parser.add_argument(
        "--baseline",
        type=argparse_type(display_text, "--baseline"),
        metavar="NAME",
        help="row the deltas are computed against: a run label or a paper row (e.g. HuatuoGPT-o1-8B, "
        "paper:m1-7B-23K); a unique prefix is enough",
    )
    parser.add_argument(
        "--reference",
        action="append",
        type=argparse_type(reference_pattern, "--reference"),
        metavar="PATTERN",
        help="paper rows to show: a name, a pattern (UltraMedical-*), table1, table2, all or none; repeatable "
        "or comma-separated (default: HuatuoGPT-o1-*, UltraMedical-*, m1-*)",
    )
    parser.add_argument(
        "--pair",
        action="append",
        nargs=2,
        type=argparse_type(display_text, "--pair"),
        metavar=("RUN_A", "RUN_B"),
        help="paired comparison of two runs (repeatable); default: every run against the baseline run or the first run",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--name",
        type=argparse_type(folder_name, "--name"),
        help="write to reports/NAME/ (default: a name made of the run labels)",
    )
    where.add_argument(
        "-o",
        "--output_path",
        "--out",
        dest="out",
        type=argparse_type(path, "--output_path"),
        metavar="DIR",
        help="write to this folder (replaced atomically, when it is empty or an old report holding only the files "
        "m1-report wrote; never a folder that holds or lies in a run read, never a symbolic link); lm_eval's flag "
        "name, --out is an alias",
    )
    parser.add_argument("--title", type=argparse_type(display_text, "--title"), help="title of the HTML pages")
    parser.add_argument(
        "--browser-limit",
        type=argparse_type(values.whole, "--browser-limit", minimum=0),
        default=50,
        metavar="N",
        help="questions per task shown with every run's texts in the question browser, samples.html (default 50; "
        "0 = no browser); every question is listed with each run's verdict",
    )
    parser.add_argument("--no-html", action="store_true", help="skip index.html and samples.html")
    parser.add_argument("--no-plots", action="store_true", help="skip budget_scaling.png/.svg")
    parser.add_argument(
        "--bootstrap",
        type=argparse_type(values.whole, "--bootstrap", minimum=MIN_BOOTSTRAP, maximum=MAX_BOOTSTRAP),
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help=f"bootstrap resamples, {MIN_BOOTSTRAP} to {MAX_BOOTSTRAP} (default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--seed",
        type=argparse_type(values.whole, "--seed", minimum=0),
        default=0,
        help="seed of the paired bootstrap, a whole number >= 0 (default 0)",
    )
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
        type=argparse_type(verbosity, "--verbosity"),
        default="WARNING",
        metavar="LEVEL",
        help="logging level, as lm_eval's: DEBUG, INFO, WARNING (default), ERROR, CRITICAL",
    )
    return parser


def _list_references() -> int:
    from m1_reports.reference import citation, reference_table
    from m1_reports.render_text import markdown_table

    frame = reference_table()
    rows = [
        [f"{100 * v:.2f}" if isinstance(v, float) else str(v) for v in record.values()]
        for record in frame.to_dict("records")
    ]
    sys.stdout.write(f"Published rows, accuracy (%): {citation().text}\n\n")
    sys.stdout.write(markdown_table(list(frame.columns), rows, "ll" + "r" * (len(frame.columns) - 2)))
    return 0


class _OneLineFormatter(logging.Formatter):
    """Log records on one line each (a name read from a file may hold line breaks); a traceback stays as it is."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return " ".join(super().formatMessage(record).splitlines())


def _error(message: str) -> None:
    """One problem, on one line (a name read from a file may hold line breaks)."""
    sys.stderr.write(f"m1-report: error: {' '.join(message.splitlines())}\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter("m1-report: %(levelname)s: %(message)s"))
    logging.basicConfig(level=args.verbosity, handlers=[handler])
    if args.list_references:
        return _list_references()
    if not args.folders:
        parser.error("give at least one lm-eval output folder (see the examples in --help)")

    from rich.console import Console

    from m1_reports.console import RichProgress, protocol_summary, summary_table
    from m1_reports.report import ReportOptions, build_report, name_of, write_report

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
    name: str | None = args.name

    def default_output(labels: list[str]) -> Path:
        return Path("reports") / (name or name_of(labels))

    try:
        progress = None if args.quiet or not console.is_terminal else RichProgress(console)
        # the output folder is checked once the results files are read, before any samples file is
        report = build_report(args.folders, options, progress, output=args.out or default_output)
        target = report.output
        files = write_report(report, target)
    except M1UserError as error:  # every user error of the project; an OSError while writing is one too
        for line in error.lines() if isinstance(error, ReportInputError) else [str(error)]:
            _error(line)
        return 2
    if not args.quiet:
        out = Console()
        out.print(protocol_summary(report.protocol))
        out.print(summary_table(report.table1))
        out.print(f"wrote {len(files)} files to {target}/", highlight=False, markup=False)
    return 0
