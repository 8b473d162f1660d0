"""The samples the sample browser shows: the wrong and unanswered samples a report keeps while the samples files
stream by, their texts laid out for display, and the m1 scorer's verdict on each.

:func:`sample_keeper` is what :func:`m1_reports.read_streams.read_samples` hands the rows it keeps (the first
``--browser-limit`` wrong or unanswered ones per run and task); :func:`attach_verdicts` asks the scorer
(:mod:`m1_reports.rescoring`).  The page that shows them is :mod:`m1_reports.render_html`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m1_models.settings import PRESETS
from m1_reports.rescoring import Rescored, not_an_m1_task, rescore
from m1_reports.suite import is_m1_task
from m1_tasks.scoring import ANSWER_MARKER

if TYPE_CHECKING:
    from m1_reports.read_results import RunInfo
    from m1_reports.read_streams import SampleKeeper

# The budget-forcing presets' thinking starts (longest first), stripped from the thinking shown in the browser.
THINK_STARTS = tuple(
    sorted({str(p["thinking_start"]) for p in PRESETS.values() if p.get("thinking_start")}, key=len, reverse=True)
)


def first_text(value: Any) -> str:
    """The first string inside lm-eval's (possibly nested) ``resps`` / ``filtered_resps`` lists."""
    while isinstance(value, list | tuple):
        if not value:
            return ""
        value = value[0]
    return "" if value is None else str(value)


def prompt_of(row: Mapping[str, Any]) -> str:
    arguments = row.get("arguments")
    if isinstance(arguments, Mapping):
        first = arguments.get("gen_args_0")
        if isinstance(first, Mapping):
            return str(first.get("arg_0", ""))
    if isinstance(arguments, list) and arguments:
        return first_text(arguments[0])
    return ""


def display_parts(text: str) -> tuple[str, str]:
    """(thinking, answer) of a response, for display only: split on the scorer's ``ANSWER_MARKER`` (the last
    one), the thinking start and the newlines after the markers left out; no marker means no thinking.

    What is *scored* is the scorer's business (:mod:`m1_reports.rescoring` asks it); this only lays out text.
    """
    index = text.rfind(ANSWER_MARKER)
    if index < 0:
        return "", text
    thinking = text[:index]
    for start in THINK_STARTS:
        if thinking.startswith(start):
            thinking = thinking[len(start) :]
            break
    return thinking.lstrip("\n"), text[index + len(ANSWER_MARKER) :].lstrip("\n")


@dataclass
class BrowserSample:
    """A wrong or unanswered sample, with its texts, for the HTML sample browser."""

    run: int
    task: str
    doc_id: Any
    path: Path
    line: int
    target: str
    prompt: str
    thinking: str  # display_parts of the raw response (resps)
    answer: str
    scored_text: str  # what lm-eval scored: filtered_resps (else resps)
    doc: Any  # the samples file's doc, for the scorer
    acc: float
    acc_strict: float
    no_answer: float
    verdict: Rescored | None = None  # the m1 scorer's extraction and rule (m1_reports.rescoring)

    @property
    def unanswered(self) -> bool:
        return self.no_answer > 0


def sample_keeper(kept: list[BrowserSample], *, run: int, task: str, path: Path) -> SampleKeeper:
    """What :func:`m1_reports.read_streams.read_samples` calls with each row it keeps for the browser: the row becomes
    a :class:`BrowserSample` appended to ``kept``."""

    def keep(line: int, row: Mapping[str, Any], acc: float, acc_strict: float, no_answer: float) -> None:
        response = first_text(row.get("resps"))
        filtered = row.get("filtered_resps")
        thinking, answer = display_parts(response)
        kept.append(
            BrowserSample(
                run=run,
                task=task,
                doc_id=row["doc_id"],
                path=path,
                line=line,
                target=str(row.get("target", "")),
                prompt=prompt_of(row),
                thinking=thinking,
                answer=answer,
                scored_text=first_text(filtered) if filtered is not None else response,
                doc=row.get("doc"),
                acc=acc,
                acc_strict=acc_strict,
                no_answer=no_answer,
            )
        )

    return keep


def attach_verdicts(browser: Sequence[BrowserSample], runs: Sequence[RunInfo]) -> None:
    """The m1 scorer's extraction and rule for every sample the browser shows (only those are re-scored)."""
    for sample in browser:
        result = runs[sample.run].tasks.get(sample.task)
        if is_m1_task(sample.task, result):
            sample.verdict = rescore(sample.scored_text, sample.doc)
        else:
            sample.verdict = not_an_m1_task(sample.task)
