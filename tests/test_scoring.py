r"""The m1 scorer (``m1_tasks.scoring``): every rule of the paper's scorer, its quirks, and properties.

Expected values follow the m1 repository's ``src/eval/extract_format.py`` / ``src/eval/score.py`` and
HuatuoGPT-o1's ``evaluation/scorer.py`` (``match_choice``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1_tasks.scoring import (
    ANSWER_MARKER,
    answer_part,
    extract_answer,
    find_most_similar_index,
    str_similarity,
    last_boxed_only_string,
    match_choice,
    parse_option_str,
    remove_boxed,
    score_response,
)

OPTIONS = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}


def make_doc(answer_idx: str = "B", options: dict[str, str] | None = None) -> dict:
    options = dict(OPTIONS if options is None else options)
    return {"question": "Which drug?", "options": options, "answer": options[answer_idx], "answer_idx": answer_idx}


DOC = make_doc("B")  # answer: B. Heparin
LAST_DOC = make_doc("D")  # answer: the last option


def test_answer_marker_constant():
    assert ANSWER_MARKER == "<|im_start|>answer"


def test_result_has_the_documented_keys_and_types():
    result = score_response("\\boxed{B}", DOC)
    assert {"correct", "correct_strict", "no_answer", "extracted", "rule"} <= set(result)
    assert type(result["correct"]) is bool and type(result["correct_strict"]) is bool
    assert type(result["no_answer"]) is bool and type(result["extracted"]) is str and type(result["rule"]) is str


# ------------------------------------------------------------------------------------------------ marker


def test_only_the_part_from_the_last_marker_is_scored():
    text = f"<|im_start|>think\n\\boxed{{A}}{ANSWER_MARKER}\n\\boxed{{C}}\n{ANSWER_MARKER}\nFinal Answer: \\boxed{{B}}"
    result = score_response(text, DOC)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "B"
    # the thinking's box is ignored even when the answer part has no box at all
    result = score_response(f"\\boxed{{B}} hmm{ANSWER_MARKER}\nThe answer is C.", DOC)
    assert result["correct"] is False and result["rule"] == "answer_is" and result["extracted"] == "C"


def test_without_marker_the_whole_text_is_scored():
    assert answer_part("no marker \\boxed{B}") == "no marker \\boxed{B}"
    assert answer_part(f"x{ANSWER_MARKER}y{ANSWER_MARKER}\nz") == f"{ANSWER_MARKER}\nz"  # marker included
    result = score_response("thinking... \\boxed{B}", DOC)
    assert result["correct"] is True and result["rule"] == "boxed"


def test_empty_answer_after_the_marker_is_no_answer():
    result = score_response(f"thinking \\boxed{{B}}{ANSWER_MARKER}", DOC)
    assert result["no_answer"] is True and result["correct_strict"] is False
    # m1 judges the bare marker: the option most similar to "<|im_start|>answer" (not the last option)
    assert result["rule"] == "similarity" and result["extracted"] == "C"
    assert result["correct"] is False  # C is not the answer of DOC


# ------------------------------------------------------------------------------------------------- boxes


def test_last_boxed_wins():
    result = score_response("first \\boxed{A}, then \\boxed{C}, finally \\boxed{B}.", DOC)
    assert result["correct"] is True and result["extracted"] == "B" and result["rule"] == "boxed"
    assert score_response("\\boxed{B} then \\boxed{A}", DOC)["correct"] is False


def test_nested_braces_are_kept():
    assert last_boxed_only_string("x \\boxed{\\frac{1}{2}} y") == "\\boxed{\\frac{1}{2}}"
    assert extract_answer("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    doc = make_doc("A", {"A": "f(x{1})", "B": "g", "C": "h"})
    result = score_response("\\boxed{f(x{1})}", doc)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "f(x{1})"


def test_text_is_unwrapped():
    assert extract_answer("\\boxed{\\text{B. Heparin}}") == "B. Heparin"
    result = score_response("Final Answer: \\boxed{\\text{B}}", DOC)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "B"


def test_equals_keeps_its_right_side():
    assert remove_boxed("\\boxed{x = B}") == "B"
    assert remove_boxed("\\boxed{a=b= Heparin}") == "Heparin"
    result = score_response("\\boxed{answer = Heparin}", DOC)
    assert result["correct"] is True and result["extracted"] == "Heparin" and result["rule"] == "boxed"


def test_fbox_is_found_but_not_unwrapped_as_upstream():
    # upstream remove_boxed only strips "\boxed{": "\fbox{B}" stays, and the letter pattern reads the B
    assert last_boxed_only_string("so \\fbox{B} ok") == "\\fbox{B}"
    assert extract_answer("so \\fbox{B} ok") == "\\fbox{B}"
    result = score_response("so \\fbox{B} ok", DOC)
    assert result["correct"] is True and result["correct_strict"] is True
    assert result["rule"] == "letter_pattern" and result["extracted"] == "B" and result["boxed"] is True
    assert score_response("so \\fbox{C} ok", DOC)["correct"] is False


def test_boxed_is_preferred_to_a_later_fbox():
    result = score_response("\\boxed{B} and later \\fbox{C}", DOC)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "B"


def test_unbalanced_box_keeps_the_whole_text():
    assert last_boxed_only_string("\\boxed{B") == "\\boxed{B"
    result = score_response("\\boxed{B", DOC)
    assert result["boxed"] is False and result["rule"] == "letter_pattern" and result["correct"] is True


# ---------------------------------------------------------------------------------------------- equality


def test_letter_equality_is_case_insensitive():
    for text in ("\\boxed{b}", "\\boxed{B}"):
        result = score_response(text, DOC)
        assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == text[7]


def test_letter_dot_text_equality():
    result = score_response("\\boxed{b. HEPARIN}", DOC)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "b. HEPARIN"


def test_answer_text_equality():
    result = score_response("\\boxed{heparin}", DOC)
    assert result["correct"] is True and result["rule"] == "boxed" and result["extracted"] == "heparin"


def test_whole_text_equality_without_a_box():
    result = score_response("B", DOC)
    assert result["correct"] is True and result["rule"] == "exact" and result["extracted"] == "B"


def test_equality_is_not_stripped_but_the_choice_rules_still_read_it():
    # " B " is not equal to "B" (upstream does not strip); the loose letter pattern then takes B
    result = score_response("\\boxed{ B }", DOC)
    assert result["correct"] is True and result["rule"] == "letter_pattern" and result["extracted"] == "B"


# ---------------------------------------------------------------------------------------- choice matching


def test_answer_is_pattern_last_match():
    result = score_response("I first thought the answer is A, but the answer is B.", DOC)
    assert result["correct"] is True and result["rule"] == "answer_is" and result["extracted"] == "B"
    result = score_response("the answer is B... no, the answer is\n C", DOC)
    assert result["correct"] is False and result["extracted"] == "C"


def test_answer_is_accepts_any_letter_to_n_and_is_case_sensitive():
    result = score_response("the answer is M", DOC)
    assert result["rule"] == "answer_is" and result["extracted"] == "M" and result["correct"] is False
    # "Answer is" (capital A) is not the strict rule; the loose pattern catches "is B"
    result = score_response("Answer is B", DOC)
    assert result["rule"] == "letter_pattern" and result["extracted"] == "B" and result["correct"] is True


def test_answer_is_applies_inside_a_box_that_is_not_equal():
    result = score_response("\\boxed{The answer is B}", DOC)
    assert result["rule"] == "answer_is" and result["extracted"] == "B" and result["correct"] is True


def test_loose_letter_pattern_last_match():
    result = score_response("Options (A) and (C) are wrong; I choose (B).", DOC)
    assert result["correct"] is True and result["rule"] == "letter_pattern" and result["extracted"] == "B"
    result = score_response("**B** looked right, but **C**", DOC)
    assert result["extracted"] == "C" and result["correct"] is False


def test_loose_letter_pattern_only_knows_the_first_n_letters():
    doc = make_doc("B", {"A": "x1", "B": "x2", "C": "x3"})
    result = score_response("(B) or maybe (E)", doc)  # E is not among A-C
    assert result["extracted"] == "B" and result["rule"] == "letter_pattern" and result["correct"] is True


def test_loose_letter_pattern_skips_the_article_a():
    # "A patient" is not option A: the option text decides instead
    result = score_response("A patient should get heparin", make_doc("A"))
    assert result["rule"] == "option_text" and result["extracted"] == "B" and result["correct"] is False


def test_huatuo_final_response_header():
    result = score_response("## Thinking\n\nthe answer is A\n\n## Final Response\n\nWe give (B).", DOC)
    assert result["rule"] == "letter_pattern" and result["extracted"] == "B" and result["correct"] is True


def test_option_text_found_latest_wins():
    result = score_response("warfarin seems risky, so give heparin", DOC)
    assert result["correct"] is True and result["rule"] == "option_text" and result["extracted"] == "B"
    result = score_response("heparin seems risky, so give warfarin", DOC)
    assert result["correct"] is False and result["rule"] == "option_text" and result["extracted"] == "C"


def test_option_text_from_a_box_that_is_not_equal():
    result = score_response("\\boxed{heparin 5000 units}", DOC)
    assert result["rule"] == "option_text" and result["extracted"] == "B" and result["correct"] is True


# ----------------------------------------------------------------------------------- similarity fallback


def test_similarity_fallback_credits_an_empty_response_in_correct_only():
    result = score_response("", LAST_DOC)
    assert result == {
        "correct": True,
        "correct_strict": False,
        "no_answer": True,
        "extracted": "D",
        "rule": "similarity",
        "raw_extracted": "",
        "boxed": False,
    }
    assert score_response("", DOC)["correct"] is False


def test_similarity_fallback_picks_the_most_similar_option():
    result = score_response("hepar", DOC)
    assert result["rule"] == "similarity" and result["extracted"] == "B"
    assert result["correct"] is True and result["correct_strict"] is False and result["no_answer"] is True


def test_find_most_similar_index_ties_go_to_the_last():
    assert find_most_similar_index(["abc", "xyz", "abc"], "abc") == 2
    assert find_most_similar_index(["a", "b"], "") == 1
    assert find_most_similar_index([], "abc") is None


@settings(max_examples=300, deadline=None)
@given(
    options=st.lists(st.text(alphabet="abcde ", max_size=30), min_size=1, max_size=6),
    target=st.text(alphabet="abcde .", max_size=600),  # past 200 characters difflib's autojunk applies
)
def test_find_most_similar_index_equals_upstream_pairwise_similarity(options, target):
    """The one-matcher speed-up picks what upstream's loop of str_similarity(option, target) picks."""
    expected, best = None, 0.0
    for i, option in enumerate(options):
        similarity = str_similarity(option, target)
        if similarity >= best:
            expected, best = i, similarity
    assert find_most_similar_index(options, target) == expected


def test_answered_responses_are_not_no_answer():
    for text in ("\\boxed{B}", "the answer is C", "(A)", "warfarin"):
        assert score_response(text, DOC)["no_answer"] is False


def test_no_parseable_option_is_rule_none():
    # an empty option text is dropped when the option lines are read back, as upstream does
    assert parse_option_str("A. \nB. x. y\nC") == {"B": "x. y"}
    doc = {"question": "q", "options": {"A": "", "B": "", "C": ""}, "answer": "", "answer_idx": "A"}
    result = score_response("nothing useful", doc)
    assert result["rule"] == "none" and result["extracted"] == "" and result["correct"] is False
    assert result["no_answer"] is True
    assert match_choice("zzz", {}, fuzzy=True).rule == "none"


def test_match_choice_without_fuzzy_returns_none():
    choice = match_choice("zzz", OPTIONS, fuzzy=False)
    assert (choice.letter, choice.rule) == ("", "none")
    choice = match_choice("zzz", OPTIONS, fuzzy=True)
    assert (choice.letter, choice.rule) == ("D", "similarity")


# ---------------------------------------------------------------------------------------------- properties

LETTERS = "ABCDEFGHIJ"
# Pieces that exercise the rules, mixed with arbitrary unicode text.
PIECES = st.sampled_from(
    [
        "\\boxed{",
        "\\fbox{",
        "\\text{",
        "}",
        "{",
        "=",
        "answer is ",
        " ",
        "\n",
        "(",
        ")",
        "*",
        "A",
        "B",
        "J",
        "a",
        "## Final Response\n\n",
        ANSWER_MARKER,
        "Heparin",
        ". ",
        "是",
    ]
)
TEXTS = st.text(max_size=200) | st.lists(PIECES | st.text(max_size=5), max_size=30).map("".join)


@st.composite
def m1_docs(draw):
    n = draw(st.integers(min_value=3, max_value=10))
    letters = LETTERS[:n]
    options = {letter: draw(st.text(max_size=20)) for letter in letters}
    answer_idx = draw(st.sampled_from(letters))
    return {
        "question": draw(st.text(max_size=20)),
        "options": options,
        "answer": options[answer_idx],
        "answer_idx": answer_idx,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS, doc=m1_docs())
def test_never_raises_and_strict_implies_correct(text, doc):
    result = score_response(text, doc)
    assert type(result["correct"]) is bool and type(result["correct_strict"]) is bool
    assert type(result["extracted"]) is str
    assert result["rule"] in {"boxed", "exact", "answer_is", "letter_pattern", "option_text", "similarity", "none"}
    if result["correct_strict"]:
        assert result["correct"]
    # no_answer means the strict pipeline found nothing, so it is never strictly correct
    assert not (result["no_answer"] and result["correct_strict"])
    assert result["no_answer"] == (result["rule"] in {"similarity", "none"})
    # only the part after the last marker counts
    assert score_response(f"{text}{ANSWER_MARKER}\\boxed{{{doc['answer_idx']}}}", doc)["correct"] is True


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=100), letter_index=st.integers(min_value=0, max_value=9), n=st.integers(3, 10))
def test_boxed_answer_letter_is_always_correct(text, letter_index, n):
    letters = LETTERS[:n]
    answer_idx = letters[letter_index % n]
    doc = {
        "question": "q",
        "options": {x: f"option {x}" for x in letters},
        "answer": f"option {answer_idx}",
        "answer_idx": answer_idx,
    }
    result = score_response(f"{text}{ANSWER_MARKER}\nFinal Answer: \\boxed{{{answer_idx}}}", doc)
    assert result["correct"] is True and result["correct_strict"] is True and result["rule"] == "boxed"


@pytest.mark.parametrize("text", [None, 123])
def test_non_string_text_does_not_raise(text):
    result = score_response(text, DOC)  # type: ignore[arg-type]
    assert result["no_answer"] is True and result["correct_strict"] is False
