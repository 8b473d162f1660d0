"""The demo's test-time scaling: the ``m1_demo_chain`` data (generated, answers right by construction, chains of
varied length) and the demo model's training text.  That the demo model's accuracy rises with the thinking budget
and that "Wait" rounds help is checked on the real engine in ``tests/test_nested_sweep.py``, whose sweep over the
same questions generates every setting's texts."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import pytest

from m1_eval import demo_model
from m1_base.markers import ANSWER_MARKER, OVERFLOW_MARKER, THINK_START
from m1_tasks import demo_chain
from m1_tasks.demo_chain import STOP_WARDS, ChainQuestion, demo_questions, make_questions
from m1_tasks.scoring import score_response



def follow(record: dict) -> tuple[list[str], str]:
    """Work a record out from its text alone: the wards visited from the start, and the answer's option letter."""
    transfers = re.search(r"entered: ([a-z ]+)\n", record["question"]).group(1).split()
    start = re.search(r"starts from ward \(([a-z])\)", record["question"]).group(1)
    leaving = {t[0]: t[1] for t in transfers}
    assert len(leaving) == len(transfers), "two transfers leave one ward"
    wards = [start]
    while wards[-1] in leaving:
        wards.append(leaving[wards[-1]])
        assert len(wards) <= len(transfers) + 1, "the transfers loop"
    assert len(wards) == len(transfers) + 1, "a transfer is off the chain"
    letter = next(k for k, v in record["options"].items() if v == f"ward {wards[-1]}")
    return wards, letter


def test_the_bundled_file_is_the_generators_output():
    assert demo_chain.CHAIN_FILE.read_text() == demo_chain.render_demo_file()
    assert demo_chain.main(["--check"]) == 0


def test_answers_are_right_by_construction():
    records = demo_chain.demo_records()[demo_chain.SOURCE]
    assert len(records) == demo_chain.DEMO_COUNT
    for record, question in zip(records, demo_questions(), strict=True):
        wards, letter = follow(record)
        assert tuple(wards) == question.wards
        assert record["answer_idx"] == letter == question.answer_letter
        assert record["options"][letter] == record["answer"] == f"ward {question.answer}"
        assert len(set(record["options"].values())) == len(record["options"]) == 4
        assert len(set(wards)) == len(wards)  # no ward twice
        stops = [w for w in wards if w in STOP_WARDS]
        assert len(stops) <= 1 and wards[0] not in STOP_WARDS and wards[-1] not in STOP_WARDS
        if stops:  # the answer of a model that stopped there is among the options, and wrong
            assert f"ward {stops[0]}" in record["options"].values()


def test_chain_lengths_vary_from_short_to_long():
    steps = Counter(min(q.steps // 4, 4) for q in demo_questions())  # 2-3, 4-7, 8-11, 12-15, 16-22
    assert min(q.steps for q in demo_questions()) == 2 and max(q.steps for q in demo_questions()) == 22
    assert len(steps) == 5 and min(steps.values()) >= 10
    stop_share = sum(q.stop_index is not None for q in demo_questions()) / demo_chain.DEMO_COUNT
    assert 0.25 <= stop_share <= 0.5


def test_generation_is_deterministic():
    assert make_questions(20, 7) == make_questions(20, 7)
    assert make_questions(20, 7) != make_questions(20, 8)
    with pytest.raises(ValueError, match="do not fit"):
        demo_chain.ChainSpec(max_steps=30)


def response(segments: list) -> str:
    """The text m1-vllm returns for a response made of these training segments (stops are not kept)."""
    kept = "".join(text for text, part in segments if part is not demo_model.Part.STOP)
    return THINK_START + kept.removesuffix("<|im_end|>")


def steps(question: ChainQuestion, stop_early: bool) -> list[str]:
    """The thinking's words: the first ward, then each transfer and the ward it reaches; after "Wait" the stop
    ward again; or the end at the stop ward."""
    words = [question.wards[0]]
    for a, b in itertools.pairwise(question.wards):
        words += [a + b, b]
        if b in STOP_WARDS:
            if stop_early:
                break
            words.append(b)
    return words


def test_the_training_text_is_what_budget_forcing_makes_and_scores_as_designed():
    rng = random.Random(0)
    goes_on = demo_model.DemoModelSpec(overflow_rate=0.0, final_wait_rate=0.0, wait_rate=1.0)
    stops = demo_model.DemoModelSpec(overflow_rate=0.0, final_wait_rate=0.0, wait_rate=0.0)
    for question in demo_questions()[:40]:
        doc = question.record()
        for spec, stop_early in ((goes_on, False), (stops, True)):
            text = response(demo_model.training_segments(question, rng, spec))
            thinking, answer = text[len(THINK_START) :].split("\n" + ANSWER_MARKER)
            assert thinking.replace("Wait", " ").split() == steps(question, stop_early)
            assert answer.startswith("\nThe last ward reached: \\boxed{ward ")
            # the m1 scorer: right after the whole chain, wrong after a stop at a stop ward
            assert score_response(text, doc)["correct"] is (not stop_early or question.stop_index is None)
    cut = demo_model.training_segments(demo_questions()[0], rng, demo_model.DemoModelSpec(overflow_rate=1.0))
    assert ("\n" + OVERFLOW_MARKER, demo_model.Part.APPENDED) in cut
