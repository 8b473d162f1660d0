r"""``acc`` equals m1's judgement on every response shape m1-vllm returns.

m1 (``src/eval/inference_keep_think.py``, ``end_thinking``) scores ``answer_prefix + answer``: the marker it
appended after thinking (``<|im_start|>answer``, or ``<|im_start|>answer\nFinal Answer:`` when the budget ran
out) plus the generated answer; without ``force_think`` it scores the whole response. m1-vllm returns
``thinking_start + thinking [+ "\n"] + marker + answer`` (forced) or the bare generation (unforced), and the
task scores that whole string. The expected letters in ``M1_JUDGEMENTS`` were obtained by running the m1
repository's own ``extract_answer`` + ``score._map_correct`` + ``huatuo_match_choice`` on ``answer_prefix +
answer`` (they are facts about upstream, not outputs of this project's code); the property test checks the
composition for arbitrary texts with the scorer's own (separately tested) rules.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1_tasks.scoring import (
    ANSWER_MARKER,
    RULE_BOXED,
    RULE_EXACT,
    build_option_str,
    extract_answer,
    match_choice,
    parse_option_str,
    score_response,
)

OPTIONS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}
THINK = "<|im_start|>think\n"
NORMAL = "<|im_start|>answer"  # m1's start_answer_str
OVERFLOW = "<|im_start|>answer\nFinal Answer:"  # m1's start_overthink_answer_str


def doc(answer_idx: str) -> dict:
    return {"question": "Which drug?", "options": OPTIONS, "answer": OPTIONS[answer_idx], "answer_idx": answer_idx}


def forced(thinking: str, prefix: str, answer: str) -> str:
    """What m1-vllm returns for a forced request (the newline before the marker as m1 adds it)."""
    return THINK + thinking + ("" if thinking.endswith("\n") else "\n") + prefix + answer


# (answer text, the letter m1 picks for NORMAL + answer, for OVERFLOW + answer, for the answer alone): from
# running m1's own scorer; "=" means an equality rule decided (correct whatever the letter, if the doc's answer).
M1_JUDGEMENTS = [
    ("\n\\boxed{B}", "=B", "=B", "=B"),  # boxed: equality on the box content
    ("\nThe answer is C.", "C", "C", "C"),  # "answer is X"
    ("\nB", "B", "B", "B"),  # loose letter pattern ("\nB" is not equal to "B": no stripping)
    ("\nHeparin is best", "B", "B", "B"),  # option text
    ("\nheparn", "B", "B", "B"),  # similarity
    ("", "C", "A", "D"),  # empty: similarity to the marker (m1) vs all-zero -> last option (unforced)
    ("\n???~~", "C", "A", "D"),  # garbage: likewise
]


def _m1_letter(text: str) -> str:
    """The letter our scorer picked, in the table's notation."""
    result = score_response(text, doc("B"))
    return ("=" if result["rule"] in (RULE_BOXED, RULE_EXACT) else "") + result["extracted"]


@pytest.mark.parametrize(("answer", "normal", "overflow", "unforced"), M1_JUDGEMENTS)
@pytest.mark.parametrize("thinking", ["I think \\boxed{A} maybe", "The answer is D.\n", "Clopidogrel? "])
def test_every_rule_in_every_shape_matches_m1(answer, normal, overflow, unforced, thinking):
    assert _m1_letter(forced(thinking, NORMAL, answer)) == normal
    assert _m1_letter(forced(thinking, OVERFLOW, answer)) == overflow
    # unforced: the whole generation is scored, as m1 does without force_think
    assert _m1_letter(answer) == unforced
    for letter in "ABCD":  # acc follows the letter for every possible gold answer
        expected = normal.lstrip("=") == letter
        assert score_response(forced(thinking, NORMAL, answer), doc(letter))["correct"] is expected


def test_the_marker_changes_the_judgement_of_an_empty_answer():
    """The difference the marker makes: cut off, an empty answer would get the last option (D)."""
    assert score_response(forced("x", NORMAL, ""), doc("D"))["correct"] is False
    assert score_response(forced("x", NORMAL, ""), doc("C"))["correct"] is True
    assert score_response(forced("x", OVERFLOW, ""), doc("A"))["correct"] is True
    assert score_response("", doc("D"))["correct"] is True  # unforced and empty: the last option, as m1


def _m1_composition(response_text: str, document: dict) -> bool:
    """m1's ``score._map_correct`` on ``response_text``, composed from the scorer's upstream-faithful parts."""
    extracted = extract_answer(response_text)
    answer, letter = document["answer"], document["answer_idx"]
    if extracted.lower() in (answer.lower(), f"{letter}. {answer}".lower()) or (
        len(extracted) == 1 and extracted.lower() == letter.lower()
    ):
        return True
    options = parse_option_str(build_option_str(document["options"]))
    return match_choice(extracted, options).letter.lower() == letter.lower()


THINKING_TEXT = st.text(max_size=60).filter(lambda t: "<|im_start|>" not in t)  # thinking stops at it
ANSWER_TEXT = (
    st.lists(
        st.sampled_from(["\\boxed{", "}", "answer is ", "A", "B", " ", "\n", "Heparin", "warf", "(", "*", "=", "x"])
        | st.text(max_size=4),
        max_size=12,
    )
    .map("".join)
    .filter(lambda t: "<|im_start|>" not in t)  # the answer phase stops at it
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thinking=THINKING_TEXT, answer=ANSWER_TEXT, prefix=st.sampled_from([NORMAL, OVERFLOW]),
       gold=st.sampled_from("ABCD"))
def test_forced_responses_are_judged_on_prefix_plus_answer(thinking, answer, prefix, gold):
    document = doc(gold)
    assert score_response(forced(thinking, prefix, answer), document)["correct"] is _m1_composition(
        prefix + answer, document
    )


def test_marker_constant_is_the_start_of_both_prefixes():
    assert NORMAL.startswith(ANSWER_MARKER) and OVERFLOW.startswith(ANSWER_MARKER)
