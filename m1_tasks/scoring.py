r"""The m1 paper's multiple-choice scorer, quirks included.

This mirrors, rule for rule, the scorer of the m1 repository (https://github.com/UCSC-VLAA/m1):

* ``src/eval/extract_format.py``: ``extract_answer``, ``last_boxed_only_string``, ``remove_boxed`` and its
  copy of ``huatuo_match_choice`` / ``find_most_similar_index`` / ``str_similarity``;
* ``src/eval/score.py``: ``score`` (the per-sample ``correct`` decision) and ``huatuo_match_choice``,

which itself adapts ``match_choice`` of HuatuoGPT-o1's ``evaluation/scorer.py``
(https://github.com/FreedomIntelligence/HuatuoGPT-o1; read through the fork ``xk-huang/HuatuoGPT-o1``, by the
m1 first author), with HuatuoGPT-o1's "first or last match, whichever scores better" trick removed: m1 only
uses the *last* match.

How one response is judged (``score_response``):

1. The text from the **last** ``<|im_start|>answer`` marker on is scored, **the marker included** (the whole
   text when there is no marker). The m1 script scores ``answer_prefix + answer``
   (``src/eval/inference_keep_think.py``, ``end_thinking``): the marker it appended before the answer
   (``<|im_start|>answer``, or ``<|im_start|>answer\nFinal Answer:`` when the budget ran out) and the text
   generated after it. m1-vllm returns ``thinking_start + thinking + marker + answer``, whose part from the
   last marker is exactly that string (the answer phase stops at ``<|im_start|>``, so no later marker can
   follow). The marker matters: the equality rules never match it, and the option-text and similarity
   fallbacks read it (an empty answer gets the option most similar to ``<|im_start|>answer``, not the last
   option). Unforced runs are scored whole, as m1 scores a run without ``force_think``. (A model that writes
   the marker itself in an unforced run is scored from its last marker; m1 would read the whole text.)
2. ``extract_answer``: the last ``\boxed{...}`` is taken (``rfind``; only when there is no ``\boxed`` at all
   is the last ``\fbox`` taken), braces balanced, so nested braces are kept. ``\boxed{...}`` is unwrapped and a
   ``=`` in it keeps only its right side (``lstrip``-ed); then a ``\text{...}`` that is the whole remaining
   string is unwrapped the same way. Without any box the whole answer text is kept as is.
3. The extraction is correct when it equals, case-insensitively and **without** stripping, the answer text,
   ``"<letter>. <answer text>"``, or (when it is one character long) the answer letter.
4. Otherwise HuatuoGPT-o1's ``match_choice`` picks a letter from the *extraction* (the box content when there
   was a box), using the last match of: ``answer is X`` (``X`` in A-N, case-sensitive), then a loose letter
   pattern (letters among the first *n* of A-N, *n* = number of options), then the option text found latest
   (case-insensitive), then the most similar option text (``difflib`` ratio).

Upstream quirks kept on purpose (they move accuracy, so parity needs them):

* **The similarity fallback always picks an option**, even for an empty or unrelated response: with every
  ratio 0 (an empty unforced response) it returns the **last** option (ties go to the later option, ``>=``);
  an empty forced answer is the bare marker, and gets the option most similar to it. ``correct`` (the ``acc`` metric)
  keeps this for parity with the paper's numbers; ``correct_strict`` (``acc_strict``) is the same pipeline
  without that fallback (no extractable answer = wrong), and ``no_answer`` flags the responses that needed it.
* ``\fbox{X}`` is found but not unwrapped (upstream ``remove_boxed`` only strips ``\boxed{``), so
  ``\fbox{B}`` is not equal to ``B``; it is then usually decided by the loose letter pattern on ``\fbox{B}``.
* ``answer is X`` accepts any letter A-N, even one that is not an option; ``Answer is X`` (capital A) does not
  match that rule (the loose letter pattern usually catches it); a capital ``A`` followed by a space is never
  taken by the loose pattern (so that the article "A patient" is not read as option A).
* Options are read back from the prompt's option lines (``"X. text"`` joined with newlines, each line stripped
  and split on the first ``". "``), as upstream does; an option whose text is empty is dropped there.

Deviations, only where upstream would crash: with no parseable option the regex of the loose letter pattern
would be invalid and the similarity fallback would index with ``None``; here those rules are skipped and the
response gets ``rule == "none"`` (wrong, ``no_answer``). ``score_response`` never raises on any text.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from m1_base.markers import ANSWER_MARKER  # the answer marker the m1 models write (its one home)

logger = logging.getLogger("lm_eval.m1_tasks.scoring")

# HuatuoGPT-o1 writes its answer after this header (evaluation/scorer.py, match_choice).
#: the m1 tasks' version (``metadata.version`` of task_yamls/_m1_task_base_yaml and of every generated group; a
#: test ties them): a change of the scorer that can move a score raises it
SCORER_VERSION = "2.0"
#: the first version scored from the last answer marker, the marker included (m1's answer_prefix + answer); the
#: reports re-score older runs' samples to compare them
MARKER_SCORED_SINCE = 2.0

HUATUO_FINAL_RESPONSE = "## Final Response\n\n"
# Letters the HuatuoGPT-o1 patterns know (evaluation/scorer.py: "ABCDEFGHIJKLMN").
CHOICE_LETTERS = "ABCDEFGHIJKLMN"

# HuatuoGPT-o1 evaluation/scorer.py, match_choice, "for strict prompt".
_ANSWER_IS = re.compile(r"(answer is\s*?)([A-N])", re.S)
# HuatuoGPT-o1 evaluation/scorer.py, match_choice, "non strict" (the letter class is filled in per question).
_LETTER_BEFORE = r"([\u4e00-\u9fff]|is |是|项|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )(["
_LETTER_AFTER = r"])(\W|[\u4e00-\u9fff]|$)"

# The values of ``ScoreResult.rule``.
RULE_BOXED = "boxed"  # the box content equals the answer text, "X. text" or the letter
RULE_EXACT = "exact"  # no box, and the whole answer text equals one of those
RULE_ANSWER_IS = "answer_is"
RULE_LETTER_PATTERN = "letter_pattern"
RULE_OPTION_TEXT = "option_text"
RULE_SIMILARITY = "similarity"
RULE_NONE = "none"


@dataclass(frozen=True)
class Choice:
    """A letter picked by ``match_choice`` and the rule that picked it (``letter == ""`` when none did)."""

    letter: str
    rule: str


@dataclass(frozen=True)
class ScoreResult:
    correct: bool  # the paper's scorer (``acc``)
    correct_strict: bool  # the same without the difflib fallback (``acc_strict``)
    no_answer: bool  # nothing could be extracted without the difflib fallback
    extracted: str  # what was judged: the extraction (equality rules) or the letter (choice rules)
    rule: str  # which rule decided, one of the RULE_* values
    raw_extracted: str  # ``extract_answer`` of the answer part (upstream's ``extracted_answer``)
    boxed: bool  # whether a balanced \boxed{} / \fbox{} was found

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- extraction


def answer_part(text: str) -> str:
    """The text from the last ``<|im_start|>answer`` marker on, marker included (m1's ``answer_prefix +
    answer``), or the whole text without a marker."""
    index = text.rfind(ANSWER_MARKER)
    return text if index < 0 else text[index:]


def _last_box_span(string: str) -> tuple[int, int] | None:
    """(start, end) of the last balanced ``\\boxed``/``\\fbox`` group, as upstream finds it; None without one.

    m1 src/eval/extract_format.py, last_boxed_only_string: ``rfind("\\boxed")``, and only when there is none
    ``rfind("\\fbox")``; then scan from there counting braces (a ``}`` before any ``{`` makes the count
    negative) until the count comes back to 0 on a ``}``.
    """
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(string)):
        char = string[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return idx, i + 1
    return None


def last_boxed_only_string(string: str) -> str:
    """The last ``\\boxed{...}`` (or ``\\fbox{...}``) group with its command, or the whole string without one.

    Upstream's ``left`` argument is accepted there but never used (it always looks for ``\\boxed``/``\\fbox``),
    so it is left out here.
    """
    span = _last_box_span(string)
    return string if span is None else string[span[0] : span[1]]


def remove_boxed(s: str, left: str = "\\boxed") -> str:
    """Unwrap ``<left>{...}`` when it is the whole string; a ``=`` inside keeps its right side (lstrip-ed).

    m1 src/eval/extract_format.py, remove_boxed: anything else is returned unchanged.
    """
    prefix = left + "{"
    if not (s.startswith(prefix) and s.endswith("}")):
        return s
    answer = s[len(prefix) : -1]
    if "=" in answer:
        answer = answer.split("=")[-1].lstrip(" ")
    return answer


def extract_answer(text: str) -> str:
    """m1 src/eval/extract_format.py, extract_answer: last box, unwrapped, then a whole ``\\text{...}`` unwrapped."""
    answer = remove_boxed(last_boxed_only_string(text))
    return remove_boxed(last_boxed_only_string(answer), "\\text")


# ----------------------------------------------------------------------------------------- choice matching


def build_option_str(options: Mapping[str, str]) -> str:
    """The prompt's option lines, as the m1 scripts build them: ``"\\n".join(f"{op}. {ans}")``."""
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def parse_option_str(option_str: str) -> dict[str, str]:
    """m1 src/eval/score.py, huatuo_match_choice: each stripped line split once on ``". "``; others dropped."""
    options: dict[str, str] = {}
    for line in option_str.split("\n"):
        line = line.strip()
        letter, sep, text = line.partition(". ")
        if not sep:
            logger.debug("m1 scorer: option line %r has no '. ', skipped (as upstream)", line)
            continue
        options[letter] = text
    return options


def str_similarity(str1: str, str2: str) -> float:
    """HuatuoGPT-o1 evaluation/scorer.py, str_similarity."""
    return difflib.SequenceMatcher(None, str1, str2).ratio()


def find_most_similar_index(str_list: list[str], target_str: str) -> int | None:
    """HuatuoGPT-o1 evaluation/scorer.py, find_most_similar_index: ``>=``, so ties (and all-0) go to the last."""
    most_similar_index: int | None = None
    highest_similarity = 0.0
    # One matcher, the target as its second sequence: difflib caches what it learns about the second sequence
    # (its one-vs-many use), so each option costs a match, not a re-index of the long response. Same ratios as
    # str_similarity(candidate, target_str), which the tests pin.
    matcher = difflib.SequenceMatcher(None, "", target_str)
    for i, candidate in enumerate(str_list):
        matcher.set_seq1(candidate)
        similarity = matcher.ratio()
        if similarity >= highest_similarity:
            most_similar_index = i
            highest_similarity = similarity
    return most_similar_index


def match_choice(text: str, options: Mapping[str, str], *, fuzzy: bool = True) -> Choice:
    """The letter HuatuoGPT-o1's ``match_choice`` picks, as m1's ``huatuo_match_choice`` (last match only).

    ``options`` are already parsed (``parse_option_str``). With ``fuzzy=False`` the difflib fallback is not
    used and ``Choice("", "none")`` is returned when no other rule matched.
    """
    if HUATUO_FINAL_RESPONSE in text:
        text = text.split(HUATUO_FINAL_RESPONSE)[-1]

    matches = list(_ANSWER_IS.finditer(text))
    if matches:
        return Choice(matches[-1].group(2), RULE_ANSWER_IS)

    match_options = CHOICE_LETTERS[: len(options)]
    if match_options:  # upstream builds an invalid "[]" class (re.error) without options
        pattern = _LETTER_BEFORE + match_options + _LETTER_AFTER
        matches = list(re.finditer(pattern, text, re.S))
        if matches:
            return Choice(matches[-1].group(2), RULE_LETTER_PATTERN)

    lowered = text.lower()
    found = [
        (letter, lowered.rindex(option.lower())) for letter, option in options.items() if option.lower() in lowered
    ]
    if found:
        # sorted(..., reverse=True) is stable: on equal positions the earlier option wins, as upstream.
        return Choice(sorted(found, key=lambda pair: pair[1], reverse=True)[0][0], RULE_OPTION_TEXT)

    if not fuzzy:
        return Choice("", RULE_NONE)
    letters = list(options)
    index = find_most_similar_index([options[letter].lower() for letter in letters], lowered)
    if index is None:  # upstream: letters[None] -> TypeError without options
        return Choice("", RULE_NONE)
    return Choice(letters[index], RULE_SIMILARITY)


# ---------------------------------------------------------------------------------------------- scoring


def _equality_match(extracted: str, answer_text: str, answer_letter: str) -> bool:
    """m1 src/eval/score.py, score._map_correct: the three equality checks (lower-cased, not stripped)."""
    lowered = extracted.lower()
    return (
        lowered == answer_text.lower()
        or lowered == f"{answer_letter}. {answer_text}".lower()
        or (len(extracted) == 1 and lowered == answer_letter.lower())
    )


def _as_options(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(letter): str(text) for letter, text in raw.items()}  # as upstream's f"{op}. {ans}"
    return {}


def score(text: str, doc: Mapping[str, Any]) -> ScoreResult:
    """Judge one response against one m1 record (``question``, ``options``, ``answer``, ``answer_idx``)."""
    answer_text = str(doc.get("answer") or "")
    answer_letter = str(doc.get("answer_idx") or "")
    options = parse_option_str(build_option_str(_as_options(doc.get("options"))))

    part = answer_part(text)
    boxed = _last_box_span(part) is not None
    raw_extracted = extract_answer(part)

    if _equality_match(raw_extracted, answer_text, answer_letter):
        rule = RULE_BOXED if boxed else RULE_EXACT
        return ScoreResult(True, True, False, raw_extracted, rule, raw_extracted, boxed)

    choice = match_choice(raw_extracted, options)
    correct = bool(choice.letter) and choice.letter.lower() == answer_letter.lower()
    no_answer = choice.rule in (RULE_SIMILARITY, RULE_NONE)
    correct_strict = correct and not no_answer
    return ScoreResult(correct, correct_strict, no_answer, choice.letter, choice.rule, raw_extracted, boxed)


def score_response(text: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``score`` as a dict: ``correct``, ``correct_strict``, ``no_answer``, ``extracted``, ``rule``, and
    ``raw_extracted``/``boxed`` for inspection. Never raises on a string ``text``."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    return score(text, doc).as_dict()
