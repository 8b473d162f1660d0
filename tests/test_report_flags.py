"""Every m1-report flag through good, bad and edge values: accepted with its documented meaning, or exit code 2
with exactly one line on stderr and no traceback (the values go through ``m1_base.values``' parsers)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from m1_reports.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
RUN = "out/run_a"  # parsing only: the folder is not read

# (dest, the flag's arguments, the parsed value): accepted, with the meaning --help documents
GOOD: list[tuple[str, list[str], Any]] = [
    ("folders", [RUN], [Path(RUN)]),
    ("folders", [RUN, "out/run b", "results_x.json"], [Path(RUN), Path("out/run b"), Path("results_x.json")]),
    ("folders", ["none"], [Path("none")]),  # a folder may be called so
    ("label", ["--label", "m1-7B-23K (ours)"], ["m1-7B-23K (ours)"]),
    ("label", ["--label", "a", "--label", "b"], ["a", "b"]),
    ("label", ["--label", "+CoT 模型 | x"], ["+CoT 模型 | x"]),  # escaped where written, not refused
    ("label", [], None),
    ("baseline", ["--baseline", "HuatuoGPT-o1-8B"], "HuatuoGPT-o1-8B"),
    ("baseline", ["--baseline", "paper:m1-7B-23K"], "paper:m1-7B-23K"),
    ("baseline", [], None),
    ("reference", ["--reference", "none"], ["none"]),  # a documented value here
    ("reference", ["--reference", "table1,table2", "--reference", "UltraMedical-*"], ["table1,table2", "UltraMedical-*"]),
    ("reference", [], None),  # the default rows
    ("pair", ["--pair", "A", "B"], [["A", "B"]]),
    ("pair", ["--pair", "A", "B", "--pair", "C", "D"], [["A", "B"], ["C", "D"]]),
    ("pair", [], None),
    ("name", ["--name", "budget-sweep"], "budget-sweep"),
    ("name", ["--name", "a b.c"], "a b.c"),
    ("name", [], None),
    ("out", ["-o", "reports/ours"], Path("reports/ours")),
    ("out", ["--output_path", "x y"], Path("x y")),
    ("out", ["--out", "/tmp/rep"], Path("/tmp/rep")),
    ("out", [], None),
    ("title", ["--title", "Ours <vs> theirs"], "Ours <vs> theirs"),
    ("title", [], None),
    ("browser_limit", [], 50),
    ("browser_limit", ["--browser-limit", "0"], 0),  # no browser
    ("browser_limit", ["--browser-limit", "+7"], 7),
    ("browser_limit", ["--browser-limit", " 3 "], 3),
    ("browser_limit", ["--browser-limit", "100000000000"], 100_000_000_000),
    ("bootstrap", [], 10_000),
    ("bootstrap", ["--bootstrap", "100"], 100),
    ("bootstrap", ["--bootstrap", "1000000"], 1_000_000),
    ("seed", [], 0),
    ("seed", ["--seed", "0"], 0),
    ("seed", ["--seed", "42"], 42),
    ("seed", ["--seed=18446744073709551616"], 2**64),  # numpy takes any whole number >= 0
    ("verbosity", [], "WARNING"),
    ("verbosity", ["--verbosity", "debug"], "DEBUG"),
    ("verbosity", ["-v", "Info"], "INFO"),
    ("verbosity", ["-v", "CRITICAL"], "CRITICAL"),
    ("no_html", ["--no-html"], True),
    ("no_html", [], False),
    ("no_plots", ["--no-plots"], True),
    ("allow_mismatch", ["--allow-mismatch"], True),
    ("allow_other_versions", ["--allow-other-versions"], True),
    ("list_references", ["--list-references"], True),
    ("quiet", ["-q"], True),
    ("quiet", ["--quiet"], True),
    ("quiet", [], False),
]

# (dest, the arguments, a piece of the one stderr line): refused
BAD: list[tuple[str, list[str], str]] = [
    ("folders", [""], "argument FOLDER: FOLDER=(empty) must be a path"),
    ("folders", [], "give at least one lm-eval output folder"),
    ("label", ["--label", ""], "argument --label: --label (empty) must not be empty"),
    ("label", ["--label", "a\nb"], "without line breaks or control characters"),
    ("label", ["--label", "tab\there"], "without line breaks or control characters"),
    ("label", ["--label", "a\u2028b"], "without line breaks or control characters"),
    ("label", ["--label", "none"], "--label 'none' is not a usable text"),
    ("label", ["--label"], "argument --label: expected one argument"),
    ("baseline", ["--baseline", ""], "--baseline (empty) must not be empty"),
    ("baseline", ["--baseline", "x\ny"], "without line breaks"),
    ("reference", ["--reference", ""], "--reference (empty) must not be empty; e.g. --reference table1"),
    ("reference", ["--reference", "   "], "must not be empty"),
    ("reference", ["--reference", "a\rb"], "without line breaks"),
    ("pair", ["--pair", "A"], "argument --pair: expected 2 arguments"),
    ("pair", ["--pair", "A", ""], "--pair (empty) must not be empty"),
    ("pair", ["--pair", "A\nB", "C"], "without line breaks"),
    ("name", ["--name", "a/b"], "--name 'a/b' must be a folder name without path separators; give a path with -o"),
    ("name", ["--name", ".."], "must be a folder name without path separators"),
    ("name", ["--name", "."], "must be a folder name without path separators"),
    ("name", ["--name", ""], "--name (empty) must not be empty"),
    ("name", ["--name", "x\ny"], "without line breaks"),
    ("name", ["--name", "a", "-o", "b"], "argument -o/--output_path/--out: not allowed with argument --name"),
    ("out", ["-o", ""], "argument -o/--output_path/--out: --output_path (empty) must be a path"),
    ("out", ["--out", "a\0b"], "must be a path"),
    ("out", ["-o"], "expected one argument"),
    ("title", ["--title", ""], "--title (empty) must not be empty"),
    ("title", ["--title", "a\rb"], "without line breaks"),
    ("browser_limit", ["--browser-limit", "-1"], "--browser-limit '-1' must be a whole number >= 0"),
    ("browser_limit", ["--browser-limit", "1.5"], "must be a whole number >= 0"),
    ("browser_limit", ["--browser-limit", "1e3"], "must be a whole number >= 0"),
    ("browser_limit", ["--browser-limit", "ten"], "must be a whole number >= 0"),
    ("browser_limit", ["--browser-limit", "inf"], "must be a whole number >= 0"),
    ("browser_limit", ["--browser-limit", ""], "must be a whole number >= 0"),
    ("bootstrap", ["--bootstrap", "99"], "--bootstrap '99' must be a whole number from 100 to 1000000"),
    ("bootstrap", ["--bootstrap", "1000001"], "must be a whole number from 100 to 1000000"),
    ("bootstrap", ["--bootstrap", "-5"], "must be a whole number from 100 to 1000000"),
    ("bootstrap", ["--bootstrap", "1e4"], "must be a whole number from 100 to 1000000"),
    ("bootstrap", ["--bootstrap", "nan"], "must be a whole number from 100 to 1000000"),
    ("seed", ["--seed", "-1"], "argument --seed: --seed '-1' must be a whole number >= 0"),  # the traceback
    ("seed", ["--seed", "1.5"], "must be a whole number >= 0"),
    ("seed", ["--seed", "true"], "must be a whole number >= 0"),
    ("seed", ["--seed", "x"], "must be a whole number >= 0"),
    ("seed", ["--seed", ""], "must be a whole number >= 0"),
    ("seed", ["--seed"], "argument --seed: expected one argument"),
    ("verbosity", ["--verbosity", "loud"], "--verbosity 'loud' is unknown; use one of DEBUG, INFO, WARNING, ERROR"),
    ("verbosity", ["-v", "warn"], "is unknown"),
    ("verbosity", ["-v", ""], "is unknown"),
    ("no_html", ["--no-html=yes"], "argument --no-html: ignored explicit argument 'yes'"),
    ("no_plots", ["--no-plots=1"], "ignored explicit argument"),
    ("allow_mismatch", ["--allow-mismatch=true"], "ignored explicit argument"),
    ("allow_other_versions", ["--allow-other-versions=1"], "ignored explicit argument"),
    ("list_references", ["--list-references=1"], "ignored explicit argument"),
    ("quiet", ["--quiet=1"], "ignored explicit argument"),
    ("unknown", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


def _dests() -> set[str]:
    return {action.dest for action in build_parser()._actions if not isinstance(action, argparse._HelpAction)}


def test_every_flag_has_good_and_bad_rows():
    """A flag added without rows here fails: each has an accepted and a refused value."""
    assert {dest for dest, _, _ in GOOD} == _dests()
    assert {dest for dest, _, _ in BAD} - {"unknown"} == _dests()


@pytest.mark.parametrize(("dest", "args", "expected"), GOOD, ids=lambda v: repr(v)[:40])
def test_good_values_have_their_documented_meaning(dest, args, expected):
    positional = [] if dest == "folders" else [RUN]
    parsed = build_parser().parse_args([*positional, *args])
    assert getattr(parsed, dest) == expected


@pytest.mark.parametrize(("dest", "args", "piece"), BAD, ids=lambda v: repr(v)[:40])
def test_bad_values_are_one_line_and_exit_2(capsys, dest, args, piece):
    positional = [] if dest == "folders" else [RUN]
    with pytest.raises(SystemExit) as exit_:
        main([*positional, *args])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("m1-report: error: ") and lines[0].endswith("(see m1-report --help)")
    assert piece in lines[0]
    assert captured.out == ""


def test_the_command_itself_prints_one_line(tmp_path):
    """``m1-report --seed -1`` as a user runs it: exit code 2, one stderr line, no traceback, before reading."""
    result = subprocess.run(
        [sys.executable, "-m", "m1_reports", str(tmp_path / "absent"), "--seed", "-1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "m1-report: error: argument --seed: --seed '-1' must be a whole number >= 0 (see m1-report --help)"
    ]
    assert result.stdout == ""


def test_a_good_seed_reaches_the_report(tmp_path, monkeypatch):
    """--seed and --bootstrap as parsed are the ones the paired bootstrap uses."""
    from m1_reports import report as report_module

    seen: dict[str, Any] = {}

    def fake_build(paths, options, progress=None, *, output=None):
        seen.update(seed=options.seed, n_boot=options.n_boot, browser_limit=options.browser_limit)
        raise report_module.ReportInputError("stop here")

    monkeypatch.setattr(report_module, "build_report", fake_build)
    assert main([RUN, "--seed", "7", "--bootstrap", "+200", "--browser-limit", "0", "-q"]) == 2
    assert seen == {"seed": 7, "n_boot": 200, "browser_limit": 0}
