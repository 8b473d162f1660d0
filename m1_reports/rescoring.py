"""The sample browser's "extracted" and "rule": the m1 scorer's own verdict, re-computed for the shown samples.

The report has no letter extractor of its own.  For each sample the browser shows, the scored text (the
sample's ``filtered_resps``, what lm-eval passed to ``process_results``; else its ``resps``) and its ``doc`` go
through the same two functions the m1 tasks call, :func:`m1_tasks.task_utils.scoring_doc` and
:func:`m1_tasks.scoring.score_response`; whatever rule the scorer applies (today: the text from the last
``<|im_start|>answer`` marker on, marker included) is applied here too, because it is the same code.

Only m1 tasks are re-scored (a task of another suite was not judged by the m1 scorer).  A few dozen samples per
run and task are re-scored, so reading a report stays as fast as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from m1_tasks import scoring
from m1_tasks.task_utils import scoring_doc

logger = logging.getLogger(__name__)

# What each of the scorer's rules means, for the browser's legend (the rule names are the scorer's own).
RULE_TEXT: dict[str, str] = {
    scoring.RULE_BOXED: "the \\boxed{} content equals the answer text, \"X. text\" or the letter",
    scoring.RULE_EXACT: "no box; the whole scored text equals the answer text, \"X. text\" or the letter",
    scoring.RULE_ANSWER_IS: "last \"answer is X\"",
    scoring.RULE_LETTER_PATTERN: "last loose option letter (HuatuoGPT-o1's pattern)",
    scoring.RULE_OPTION_TEXT: "the option whose text appears latest",
    scoring.RULE_SIMILARITY: "no answer found: the most similar option (difflib), counted as no_answer",
    scoring.RULE_NONE: "no answer found and no option to fall back on",
}
NOT_RESCORED = "not re-scored"


@dataclass(frozen=True)
class Rescored:
    """The m1 scorer's verdict on one sample (``score_response``'s fields), or why there is none."""

    extracted: str
    rule: str
    raw_extracted: str = ""
    boxed: bool = False
    correct: bool | None = None
    correct_strict: bool | None = None
    no_answer: bool | None = None
    reason: str = ""  # set when the sample was not re-scored

    @property
    def scored(self) -> bool:
        return self.correct is not None


def rescore(text: str, doc: Any) -> Rescored:
    """``score_response(text, scoring_doc(doc))``; a doc the scorer cannot take gives a :class:`Rescored` with
    ``reason`` set (the report never fails on one sample)."""
    if not isinstance(doc, Mapping) or "options" not in doc:
        return Rescored("", NOT_RESCORED, reason="the sample has no m1 doc (question, options, answer)")
    try:
        result = scoring.score_response(text, scoring_doc(dict(doc)))
    except Exception as error:  # noqa: BLE001 - a malformed doc costs that sample's verdict only
        logger.debug("m1-report: could not re-score a sample: %r", error)
        return Rescored("", NOT_RESCORED, reason=f"its doc cannot be scored ({type(error).__name__}: {error})")
    return Rescored(
        extracted=str(result.get("extracted", "")),
        rule=str(result.get("rule", "")),
        raw_extracted=str(result.get("raw_extracted", "")),
        boxed=bool(result.get("boxed", False)),
        correct=bool(result.get("correct")),
        correct_strict=bool(result.get("correct_strict")),
        no_answer=bool(result.get("no_answer")),
    )


def not_an_m1_task(task: str) -> Rescored:
    return Rescored("", NOT_RESCORED, reason=f"{task} is not an m1 task: the m1 scorer did not judge it")
