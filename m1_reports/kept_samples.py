"""What the question browser shows: every document's question (kept once per task while the samples files stream
by), the questions chosen to be shown with every run's texts, those rows read again, their texts laid out for
display, and the m1 scorer's verdict on each.

:func:`question_noter` is what :func:`m1_reports.read_streams.read_samples` hands each row (a document's question
is kept the first time it is seen); once every file is read, :func:`choose_questions` picks up to
``--browser-limit`` questions per task (those whose verdict changed between runs first, then those no run got
right, then the rest), :func:`read_kept` reads those rows of every run again (by byte offset: a seek and one JSON
line each) and :func:`attach_verdicts` asks the scorer (:mod:`m1_reports.rescoring`).  The page is
:mod:`m1_reports.render_questions`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from m1_base.errors import ReportInputError
from m1_models.settings import PRESETS
from m1_reports.read_streams import DocNoter, loads_line
from m1_reports.regular_files import open_regular
from m1_reports.rescoring import Rescored, not_an_m1_task, rescore
from m1_reports.suite import is_m1_task
from m1_tasks.prompt import options_dict
from m1_tasks.scoring import ANSWER_MARKER

if TYPE_CHECKING:
    from m1_reports.read_results import RunInfo

# The budget-forcing presets' thinking starts (longest first), stripped from the thinking shown in the browser.
THINK_STARTS = tuple(
    sorted({str(p["thinking_start"]) for p in PRESETS.values() if p.get("thinking_start")}, key=len, reverse=True)
)
# A sample's verdict as the browser codes it: right, wrong, no answer, no score (a corpus metric, NaN), and partly
# right (a score between 0 and 1: some of a question's K samples right, lm-eval's repeats)
RIGHT, WRONG, NO_ANSWER, NO_SCORE, PARTLY = "R", "W", "N", "?", "P"


def all_texts(value: Any) -> list[str]:
    """Every response of a samples row's ``resps`` / ``filtered_resps``, in order: ``[[r]]`` -> ``[r]``; K samples
    (lm-eval's repeats, every response kept) ``[[r_1, ..., r_K]]`` -> ``[r_1, ..., r_K]``."""
    while isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], list | tuple):
        value = value[0]
    if not isinstance(value, list | tuple):
        return [] if value is None else [str(value)]
    return [first_text(item) for item in value]


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


# ------------------------------------------------------------------------------------------------ questions


@dataclass(frozen=True)
class Question:
    """A document as the question browser shows it: the question (an m1 doc's ``question``, else the prompt), its
    options (letter, text) and the target."""

    doc_id: Any
    text: str
    options: tuple[tuple[str, str], ...]
    target: str


def question_of(row: Mapping[str, Any]) -> Question:
    doc = row.get("doc")
    text, options = "", ()
    if isinstance(doc, Mapping):
        text = str(doc.get("question") or "")
        try:
            options = tuple(options_dict(doc["options"]).items()) if "options" in doc else ()
        except (TypeError, ValueError, KeyError):
            options = ()
    return Question(row.get("doc_id"), text or prompt_of(row), options, str(row.get("target", "")))


def question_noter(questions: dict[Any, Question]) -> DocNoter:
    """What :func:`~m1_reports.read_streams.read_samples` calls with each row: the document's question is kept the
    first time any run shows it (``questions``: one task's, doc_id -> :class:`Question`)."""

    def note(doc_id: Any, row: Mapping[str, Any]) -> None:
        if doc_id not in questions:
            questions[doc_id] = question_of(row)

    return note


def verdict_codes(samples: pd.DataFrame) -> np.ndarray:
    """One code per sample row: :data:`RIGHT` (acc 1), :data:`PARTLY` (0 < acc < 1: the mean over a question's K
    samples), :data:`NO_ANSWER`, :data:`WRONG`, :data:`NO_SCORE` (NaN)."""
    acc = samples["acc"].to_numpy(dtype=float)
    no_answer = samples["no_answer"].to_numpy(dtype=float) > 0
    partly = (acc > 0.0) & (acc < 1.0)
    return np.where(
        acc >= 1.0,
        RIGHT,
        np.where(partly, PARTLY, np.where(no_answer, NO_ANSWER, np.where(np.isnan(acc), NO_SCORE, WRONG))),
    )


def verdict_code(acc: float, no_answer: float) -> str:
    """:func:`verdict_codes` of one row."""
    if acc >= 1.0:
        return RIGHT
    if 0.0 < acc < 1.0:
        return PARTLY
    if no_answer > 0:
        return NO_ANSWER
    return NO_SCORE if acc != acc else WRONG


def choose_questions(samples: pd.DataFrame, limit: int) -> dict[str, list[Any]]:
    """Per task, the doc ids (at most ``limit``) whose texts the question browser shows for every run: first the
    questions whose verdict changed between runs (right in one, wrong or unanswered in another), then those no run
    got right, then the rest; each group in the order of the samples files."""
    if limit <= 0 or samples.empty:
        return {}
    codes = verdict_codes(samples)
    frame = pd.DataFrame(
        {"task": samples["task"].astype(str).to_numpy(), "doc_id": samples["doc_id"].to_numpy(),
         "right": (codes == RIGHT) | (codes == PARTLY),
         "missed": (codes == WRONG) | (codes == NO_ANSWER) | (codes == PARTLY)}
    )  # fmt: skip
    per_doc = frame.groupby(["task", "doc_id"], sort=False).agg(right=("right", "any"), missed=("missed", "any"))
    rank = np.where(per_doc["right"] & per_doc["missed"], 0, np.where(~per_doc["right"], 1, 2))
    per_doc = per_doc.assign(rank=rank, order=np.arange(len(per_doc)))
    chosen: dict[str, list[Any]] = {}
    for task, part in per_doc.groupby(level="task", sort=False):
        best = part.sort_values(["rank", "order"], kind="stable").head(limit)
        chosen[str(task)] = list(best.index.get_level_values("doc_id"))
    return chosen


@dataclass
class BrowserSample:
    """One run's sample of a question the browser shows with its texts."""

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
    # K samples per question (lm-eval's repeats): the texts above are sample 1's; ``first_acc`` its own score
    # (the row's ``avg@1``, NaN when absent); ``others`` the scorer's verdicts on samples 2..K
    repeats: int = 1
    first_acc: float = float("nan")
    others: list[Rescored] | None = None
    other_texts: list[str] | None = None  # samples 2..K's scored texts, until attach_verdicts scores them

    @property
    def unanswered(self) -> bool:
        return self.no_answer > 0


def read_kept(
    runs: Sequence[RunInfo], samples: pd.DataFrame, chosen: Mapping[str, Sequence[Any]]
) -> list[BrowserSample]:
    """Every run's rows of the chosen questions, read again from the samples files (a seek to the row's byte
    offset and one JSON line each), as :class:`BrowserSample`\\s (without verdicts yet: :func:`attach_verdicts`)."""
    kept: list[BrowserSample] = []
    if not chosen or samples.empty:
        return kept
    sets = _sets(samples, chosen)
    pairs = zip(samples["doc_id"], sets, strict=True)
    wanted = np.fromiter((doc_id in found for doc_id, found in pairs), bool, len(sets))
    part = samples.loc[wanted, ["run", "task", "doc_id", "line", "offset", "acc", "acc_strict", "no_answer"]]
    labels = {run.label: index for index, run in enumerate(runs)}
    for (label, task), rows in part.groupby(["run", "task"], observed=True, sort=False):
        run = runs[labels[str(label)]]
        path = run.files.samples_path(str(task))
        with open_regular(path) as handle:
            for r in rows.itertuples():
                handle.seek(int(r.offset))
                raw = handle.readline()
                try:
                    row = loads_line(raw)
                except ValueError:
                    row = None
                if not isinstance(row, dict) or row.get("doc_id") != r.doc_id:
                    raise ReportInputError(
                        "changed while the report read it (the row is no longer where it was)",
                        path=path,
                        line=int(r.line),
                        hint="let the evaluation finish, then run m1-report again",
                    )
                sample = _sample(labels[str(label)], str(task), path, int(r.line), row, r)
                if sample.other_texts is not None:  # score samples 2..K now: their texts are not kept
                    attach_verdicts([sample], runs)
                kept.append(sample)
    return kept


def _sets(samples: pd.DataFrame, chosen: Mapping[str, Sequence[Any]]) -> list[set[Any]]:
    empty: set[Any] = set()
    sets = {task: set(doc_ids) for task, doc_ids in chosen.items()}
    return [sets.get(task, empty) for task in samples["task"].astype(str)]


def _sample(run: int, task: str, path: Path, line: int, row: Mapping[str, Any], scores: Any) -> BrowserSample:
    response = first_text(row.get("resps"))
    filtered = row.get("filtered_resps")
    thinking, answer = display_parts(response)
    scored = all_texts(filtered) if filtered is not None else all_texts(row.get("resps"))
    first_acc = row.get("avg@1")
    return BrowserSample(
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
        acc=float(scores.acc),
        acc_strict=float(scores.acc_strict),
        no_answer=float(scores.no_answer),
        repeats=max(1, len(scored)),
        first_acc=float(first_acc) if isinstance(first_acc, int | float) else float("nan"),
        other_texts=scored[1:] if len(scored) > 1 else None,
    )


def attach_verdicts(browser: Sequence[BrowserSample], runs: Sequence[RunInfo]) -> None:
    """The m1 scorer's extraction and rule for every sample the browser shows (only those are re-scored), and for
    each of a K-sample row's samples 2..K (whose texts are then let go)."""
    for sample in browser:
        if sample.verdict is not None:
            continue
        result = runs[sample.run].tasks.get(sample.task)
        m1 = is_m1_task(sample.task, result)
        sample.verdict = rescore(sample.scored_text, sample.doc) if m1 else not_an_m1_task(sample.task)
        if sample.other_texts is not None:
            sample.others = [rescore(text, sample.doc) if m1 else sample.verdict for text in sample.other_texts]
            sample.other_texts = None
