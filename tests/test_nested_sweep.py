"""A nested sweep on the real vLLM engine: the 100 questions of the demo task (m1_demo_chain, 2-22 steps of
thinking, some through a "stop ward" where the model ends its thinking early) x budgets {8, 24, 64} x "Wait"
rounds {0, 1, 2}, greedy (the paper's protocol), generated in one call with steps shared
(m1_models/step_sharing.py) are, setting by setting, the texts and records of the same requests generated as
separate runs of one setting each, every request on its own steps.  The demo model (m1_eval/demo_model.py) ends
its thinking greedily, where the tiny test model would think on to every budget; float32 keeps decoding
independent of what a request is batched with.  ``tests/test_sweep.py`` pins the whole command (m1-sweep's
folders equal a separate lm_eval run of its smallest setting, seeded sampling); ``tests/test_step_sharing.py``
every branch on a scripted engine.  The same sweep's texts, scored by the task, show the demo's test-time scaling.
"""

from __future__ import annotations

import itertools

import pytest
from lm_eval.api.instance import Instance

from m1_models.records import RecordSink, request_hash
from m1_tasks.demo_chain import demo_questions
from m1_tasks.prompt import render_prompt

pytestmark = pytest.mark.engine

BUDGETS = (8, 24, 64)
IGNORES = (0, 1, 2)
DOCUMENTS = 100
#: what must be the same as the setting's own run (decoded_tokens, reused_tokens and cached_tokens say how the
#: work was shared, which is what differs)
SAME = ("forced", "budget", "prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit",
        "finish_reasons", "thinking_text", "answer_text", "doc_id", "request_hash")  # fmt: skip


def settings() -> list[dict]:
    return [
        {"max_tokens_thinking": b, "thinking_n_ignore": n, "max_tokens_answer": 24, "do_sample": False}
        for b, n in itertools.product(BUDGETS, IGNORES)
    ]


@pytest.fixture(scope="module")
def demo_lm():
    """A float32 m1-vllm engine on the demo model (built once per machine, as the demo builds it)."""
    from m1_eval.demo_model import ensure_demo_model
    from m1_models.vllm_model import M1VLLM

    lm = M1VLLM(pretrained=str(ensure_demo_model()), max_model_len=2048, dtype="float32", gpu_memory_utilization=0.1)
    yield lm
    lm.close()


def instances(lm, gen_kwargs: dict) -> list[Instance]:
    out = []
    for doc, question in enumerate(demo_questions()[:DOCUMENTS]):
        user = render_prompt(question.question_text(), question.option_texts())
        context = lm.apply_chat_template([{"role": "user", "content": user}])
        out.append(Instance("generate_until", {}, (context, dict(gen_kwargs)), idx=0, metadata=("nested", doc, 1)))
    return out


def generate(lm, requests: list[Instance]) -> dict[str, tuple[str, dict]]:
    """Texts and records by request hash."""
    texts = lm.generate_until(requests, disable_tqdm=True)
    by_hash = {r["request_hash"]: r for r in lm.record_sink.pop("nested")}
    keys = [request_hash(*request.args) for request in requests]
    return {key: (text, by_hash[key]) for key, text in zip(keys, texts, strict=True)}


@pytest.fixture(scope="module")
def runs(demo_lm) -> tuple[dict[str, tuple[str, dict]], dict[str, tuple[str, dict]]]:
    """Every setting's requests in one call, steps shared (nested), and each setting alone (separate), by request
    hash."""
    lm = demo_lm
    sink, lm.record_sink = lm.record_sink, RecordSink()
    try:
        every = [request for gen_kwargs in settings() for request in instances(lm, gen_kwargs)]
        nested = generate(lm, every)
        lm.share_steps = False
        separate: dict[str, tuple[str, dict]] = {}
        for gen_kwargs in settings():
            separate.update(generate(lm, instances(lm, gen_kwargs)))
    finally:
        lm.share_steps = True
        lm.record_sink = sink
    return nested, separate


def test_a_nested_sweep_equals_separate_runs_setting_by_setting(runs):
    nested, separate = runs
    assert len(nested) == len(separate) == DOCUMENTS * len(settings())
    differing = [key for key in separate if nested[key][0] != separate[key][0]]
    assert differing == [], f"{len(differing)} of {len(separate)} texts differ"
    for key, (_, record) in separate.items():
        assert {k: nested[key][1][k] for k in SAME} == {k: record[k] for k in SAME}
    # the protocol's branches all occur: budget hits, early ends, "Wait" rounds
    records = [record for _, record in nested.values()]
    assert {r["budget_hit"] for r in records} == {True, False}
    assert {r["ignore_rounds"] for r in records} >= {0, 1, 2}
    # and the sharing did happen: the nested call decoded less than half of what the separate runs decoded
    decoded = sum(r["decoded_tokens"] for r in records)
    alone = sum(record["decoded_tokens"] for _, record in separate.values())
    assert sum(r["reused_tokens"] for r in records) > 0 and decoded < alone / 2
    assert all(record["reused_tokens"] == 0 for _, record in separate.values())
    assert all(
        nested[key][1]["decoded_tokens"] + nested[key][1]["reused_tokens"] == record["decoded_tokens"]
        for key, (_, record) in separate.items()
    )


def test_the_demo_model_scales_with_the_thinking_budget_and_wait(demo_lm, runs):
    """The demo's test-time scaling, scored by the task's own process_results (greedy, the 100 questions): its
    accuracy rises with the thinking budget, and "Wait" rounds carry the chains that pass a stop ward to their end."""
    from m1_tasks.task_utils import process_results

    nested, _ = runs
    questions = demo_questions()[:DOCUMENTS]

    def accuracy(budget: int, ignores: int) -> float:
        gen_kwargs = next(
            g for g in settings() if g["max_tokens_thinking"] == budget and g["thinking_n_ignore"] == ignores
        )
        hits = [
            process_results(question.record(), [nested[request_hash(*request.args)][0]])["acc"]
            for question, request in zip(questions, instances(demo_lm, gen_kwargs), strict=True)
        ]
        return sum(hits) / len(hits)

    acc = {(b, n): accuracy(b, n) for b in (8, 64) for n in (0, 1)}
    stops = sum(q.stop_index is not None for q in questions) / len(questions)
    # greedy: a long enough budget and a "Wait" round follow every chain; 8 tokens finish only the shortest
    assert acc[64, 1] >= 0.9, acc
    assert acc[64, 1] >= acc[8, 1] + 0.4, acc
    # without "Wait", the chains through a stop ward end there: wrong
    assert acc[64, 1] - acc[64, 0] >= stops - 0.1, (acc, stops)
    assert acc[64, 0] >= acc[8, 0] + 0.2, acc
