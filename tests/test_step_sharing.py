"""Nested settings in one generation (m1_models/step_sharing.py) against a scripted engine: every setting of a sweep
gets exactly the result of its own run, while each family of steps with the same prefix is generated once.

The scripted engine is a function of the prompt (as greedy decoding is), cuts at the token limit and stop strings
as vLLM does (tests/scripted_engine.py), and uses one character per token, so the markers are multi-token stop
strings: a budget that ends inside a stop string is one of the cases checked.  The real engine's identity is
tests/test_nested_sweep.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from m1_models.budget_forcing import ForcedRequest
from m1_models.engine_types import GenerationStep, Phase, StepResult
from m1_models.scheduling import run
from m1_models.settings import parse_gen_kwargs
from m1_models.step_sharing import StepSharing, family
from tests.scripted_engine import EOS, CharTokenizer, ScriptedEngine

TOK = CharTokenizer()
SAMPLING_KEYS = frozenset({"temperature", "top_p", "seed"})
PROMPT = "<|im_start|>user\nQ{}?<|im_end|>\n<|im_start|>assistant\n"
#: what a record must say the same as the setting's own run (decoded/reused/cached say how the work was shared)
SAME = ("forced", "budget", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit", "finish_reasons",
        "thinking_text", "answer_text", "prompt_tokens")  # fmt: skip


def model_of(seed: int):
    """A deterministic model: thinking lengths per round drawn from the prompt, stopped by the answer marker, EOS
    or a lone <|im_end|>; the answer names a letter."""

    def model(prompt: str) -> str:
        if prompt.endswith(("<|im_start|>answer", "Final Answer:")):
            return f" The answer is \\boxed{{{'ABCD'[len(prompt) % 4]}}}.<|im_end|>tail"
        rng = random.Random(f"{seed}:{prompt}")
        thought = "".join(rng.choice("abc de\n") for _ in range(rng.choice([3, 7, 15, 31, 40, 64, 90])))
        end = rng.choice(["<|im_start|>answer\nx", "<|im_end|>", EOS, "<|im_start|>ans"])
        return thought + end

    return model


def settings_of(budgets, ignores, extra=None) -> list[dict]:
    return [
        {"max_tokens_thinking": b, "thinking_n_ignore": n, "max_tokens_answer": 12, **(extra or {})}
        for b, n in itertools.product(budgets, ignores)
    ]


def requests_of(prompts: list[str], kwargs_list: list[dict]) -> list[ForcedRequest]:
    return [
        ForcedRequest(TOK.encode(prompt), parse_gen_kwargs(dict(kwargs), SAMPLING_KEYS), TOK, 10_000)
        for prompt in prompts
        for kwargs in kwargs_list
    ]


def alone(prompt: str, kwargs: dict, model) -> ForcedRequest:
    [request] = requests_of([prompt], [kwargs])
    run([request], ScriptedEngine(model))
    return request


def record(request: ForcedRequest) -> dict:
    return {name: getattr(request.record, name) for name in SAME}


@pytest.mark.parametrize("schedule", ["continuous", "rounds"])
@pytest.mark.parametrize("seed", range(6))
def test_every_setting_equals_its_own_run(seed, schedule):
    model = model_of(seed)
    prompts = [PROMPT.format(i) for i in range(4)]
    kwargs_list = settings_of([4, 8, 16, 32, 64], [0, 1, 2])
    requests = requests_of(prompts, kwargs_list)
    engine = ScriptedEngine(model, tokens_per_poll=5)
    sharing = StepSharing(engine, TOK)
    run(requests, sharing, schedule)
    for request, (prompt, kwargs) in zip(requests, itertools.product(prompts, kwargs_list), strict=True):
        own = alone(prompt, kwargs, model)
        assert request.output_text() == own.output_text(), (prompt, kwargs)
        assert record(request) == record(own), (prompt, kwargs)
        assert request.record.decoded_tokens + request.record.reused_tokens == own.record.decoded_tokens
    # the engine ran far fewer calls than the settings' own runs together, and never one step twice
    own_calls = sum(len(alone(p, k, model).record.finish_reasons) for p, k in itertools.product(prompts, kwargs_list))
    assert sharing.calls + sharing.taken == own_calls
    assert sharing.calls < own_calls / 2
    steps = [step for _, _, step in engine.submitted]
    repeated = [s for s in steps if sum(family(t) == family(s) and t.max_tokens == s.max_tokens for t in steps) > 1]
    assert repeated == []


def test_the_largest_setting_is_generated_and_smaller_ones_take_its_prefix():
    # one round of 40 characters then the answer marker: budgets 8 and 16 are cut from budget 64's thinking
    model = lambda prompt: (  # noqa: E731
        " B.<|im_end|>" if prompt.endswith("answer") else "t" * 40 + "<|im_start|>answer\n"
    )
    requests = requests_of([PROMPT.format(0)], settings_of([8, 16, 64], [0]))
    engine = ScriptedEngine(model)
    run(requests, StepSharing(engine, TOK))
    thinking = [step for _, _, step in engine.submitted if step.phase is Phase.THINKING]
    assert [step.max_tokens for step in thinking] == [64]  # one thinking call, the largest budget
    small, middle, large = requests
    assert (small.record.thinking_tokens, small.record.budget_hit, small.record.reused_tokens) == (8, True, 8)
    assert (middle.record.thinking_tokens, middle.record.reused_tokens) == (16, 16)
    # its own calls: 40 + the stop string <|im_start|> (12), then the answer cut at max_tokens_answer=12
    assert large.record.reused_tokens == 0 and large.record.decoded_tokens == 52 + 12
    assert (large.record.thinking_tokens, large.record.budget_hit) == (40, False)
    # the three answers fork: two overflow markers at different points, one early end; the engine is told where
    # the forks' prefix is (their keys 0 and 1 took it from key 2's call)
    assert sum(step.phase is Phase.ANSWER for _, _, step in engine.submitted) == 3
    assert sorted(engine.colocated) == [(0, 2), (1, 2)]


def test_settings_that_fork_at_the_same_point_share_the_answer_too():
    model = lambda prompt: (  # noqa: E731
        " B.<|im_end|>" if prompt.endswith("answer") else "t" * 5 + "<|im_start|>answer\n"
    )
    # 5 characters and the stop string (12): every budget >= 17 sees the same early end
    requests = requests_of([PROMPT.format(0)], settings_of([17, 32, 64], [0]))
    engine = ScriptedEngine(model)
    run(requests, StepSharing(engine, TOK))
    assert [step.phase for _, _, step in engine.submitted] == [Phase.THINKING, Phase.ANSWER]
    assert len({request.output_text() for request in requests}) == 1


def test_a_budget_that_ends_inside_a_stop_string_runs_on_its_own():
    # 10 characters then "<|im_start|>answer\n" (19): a budget of 14 ends inside the stop string, where the larger
    # call's result cannot say what the smaller call returns; it runs itself and gets its own run's result
    model = lambda prompt: (  # noqa: E731
        " B.<|im_end|>" if prompt.endswith(("answer", "Answer:")) else "t" * 10 + "<|im_start|>answer\n"
    )
    kwargs_list = settings_of([14, 64], [0])
    requests = requests_of([PROMPT.format(0)], kwargs_list)
    engine = ScriptedEngine(model)
    run(requests, StepSharing(engine, TOK))
    thinking = [step.max_tokens for _, _, step in engine.submitted if step.phase is Phase.THINKING]
    assert thinking == [64, 14]
    for request, kwargs in zip(requests, kwargs_list, strict=True):
        assert request.output_text() == alone(PROMPT.format(0), kwargs, model).output_text()


def test_seeded_settings_share_and_differently_seeded_requests_do_not():
    model = lambda prompt: (  # noqa: E731
        " B.<|im_end|>" if prompt.endswith(("answer", "Answer:")) else "t" * 30 + EOS
    )
    same = requests_of([PROMPT.format(0)], settings_of([8, 64], [1], {"temperature": 0.7, "seed": 5}))
    other = requests_of([PROMPT.format(0)], settings_of([64], [1], {"temperature": 0.7, "seed": 6}))
    engine = ScriptedEngine(model)
    sharing = StepSharing(engine, TOK)
    run(same + other, sharing)
    assert same[0].record.reused_tokens == 8  # the budget-8 setting took its thinking from the budget-64 one
    assert other[0].record.reused_tokens == 0
    for request, kwargs in zip(same, settings_of([8, 64], [1], {"temperature": 0.7, "seed": 5}), strict=True):
        assert request.output_text() == alone(PROMPT.format(0), kwargs, model).output_text()


def test_plain_steps_are_shared_only_when_identical():
    engine = ScriptedEngine(lambda prompt: "x" * 50)
    sharing = StepSharing(engine, TOK)
    requests = [
        ForcedRequest(TOK.encode("Q"), parse_gen_kwargs({"max_gen_toks": n}, SAMPLING_KEYS), TOK, 10_000)
        for n in (20, 20, 30)
    ]
    run(requests, sharing)
    assert sorted(step.max_tokens for _, _, step in engine.submitted) == [20, 30]  # a plain text is never cut
    assert [r.output_text() for r in requests] == ["x" * 20, "x" * 20, "x" * 30]
    assert [r.record.reused_tokens for r in requests].count(20) == 1


def test_derive_follows_vllm_at_the_token_limit():
    sharing = StepSharing(ScriptedEngine(lambda prompt: ""), TOK)
    step = GenerationStep((1, 2), 64, ("<|im_end|>",), Phase.THINKING)
    smaller = dataclasses.replace(step, max_tokens=6)
    stopped = StepResult(tuple(map(ord, "abcdef")) + (0,), "abcdef", "stop")  # EOS sampled as the 7th token
    assert sharing.derive(step, stopped, dataclasses.replace(step, max_tokens=7)).token_ids == stopped.token_ids
    cut = sharing.derive(step, stopped, smaller)
    assert (cut.token_ids, cut.text, cut.finish_reason, cut.shared) == (stopped.token_ids[:6], "abcdef", "length", True)
    ran_out = StepResult(tuple(range(97, 97 + 64)), "x", "length")
    assert sharing.derive(step, ran_out, dataclasses.replace(step, max_tokens=65)) is None  # needs more tokens
    assert sharing.derive(step, ran_out, smaller).finish_reason == "length"
