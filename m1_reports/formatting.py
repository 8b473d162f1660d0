"""Cell formatting shared by every renderer (Markdown, LaTeX, HTML, the console): percentages, confidence
intervals, p-values, signed differences, counts, and the escaping of text for Markdown and LaTeX (CSV cells are
:mod:`m1_reports.render_csv`'s, HTML is Jinja2's autoescaping, :mod:`m1_reports.render_html`).

Accuracies are fractions (0..1) in the frames; these functions show them as percentages, as the paper does.  A
missing value (None or NaN) is ``–`` where a cell needs a value and ``""`` where it is an addition to one (a
difference, an interval).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from m1_reports.average import average_label
from m1_reports.columns import AVG, benchmark

MISSING = "–"


def is_missing(value: Any) -> bool:
    """None or a float NaN (what pandas and the frames use for "no value")."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: float | None, digits: int = 2) -> str:
    """``0.5234`` -> ``52.34``; missing -> ``–``."""
    if is_missing(value):
        return MISSING
    return f"{100 * value:.{digits}f}"


def signed_pct(value: float | None, digits: int = 2) -> str:
    """A difference in points, signed: ``+1.20`` / ``-0.35``; missing -> ``""``."""
    if is_missing(value):
        return ""
    return f"{100 * value:+.{digits}f}"


def ci_text(low: float, high: float, digits: int = 1) -> str:
    """A confidence interval in percent, ``[48.1, 56.5]``; ``""`` when either bound is missing."""
    if math.isnan(low) or math.isnan(high):
        return ""
    return f"[{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def number(value: Any, digits: int = 1) -> str:
    """A count (integers as they are) or a mean (``digits`` decimals); missing -> ``–``."""
    if is_missing(value):
        return MISSING
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def p_text(p: float | None) -> str:
    """A p-value: four decimals, ``<0.0001`` below that; missing -> ``–``."""
    if p is None or math.isnan(p):
        return MISSING
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def text_or_missing(value: Any) -> str:
    """``str(value)``, or ``–`` when missing."""
    return MISSING if is_missing(value) else str(value)


def task_label(task: str, avg_benchmarks: Any = None) -> str:
    """The display name of a task row; an average row is ``Avg``, or ``Avg (3 of 10)`` over fewer than the ten
    benchmarks (``avg_benchmarks``: the row's count, :mod:`m1_reports.average`)."""
    return average_label(avg_benchmarks) if task == AVG else benchmark(str(task)).label


# Every character Python (and so a Markdown or LaTeX reader) may take as the end of a line: \n, \r, \v, \f,
# the file/group/record separators, NEL and the Unicode line and paragraph separators (``str.splitlines``).
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


def one_line(value: Any) -> str:
    """``str(value)`` on one line: every line break a space (a name from a file can then start no new line, row
    or list item of the text it is put in)."""
    return str(value).translate(_LINE_BREAKS)


def markdown_text(value: Any) -> str:
    """Text from a file or the command line inside a Markdown line (a heading, a list item, a note): on one
    line."""
    return one_line(value)


def markdown_escape(value: Any) -> str:
    """A Markdown table cell: ``|`` escaped, line breaks as spaces."""
    return one_line(value).replace("|", "\\|")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Text for LaTeX: the ten special characters escaped, on one line (an empty line would end the table's
    paragraph)."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in one_line(text))
