"""m1-hf (transformers) on the tiny model: its step engine, parity with m1-vllm, model_args, the lm_eval command.

The shared controller's behaviour through m1-hf (budgets, ignore rounds, plain generation, records, schedules,
bad gen_kwargs, seeds, aborts) is tested on every backend in tests/test_backend_contract.py; the session's
``hf_lm`` is in tests/conftest.py."""

from __future__ import annotations

import logging

import pytest
from lm_eval.api.instance import Instance

from m1_base.errors import GenKwargsError, ModelArgsError
from m1_models.engine_types import GenerationStep, Phase
from m1_models.records import SINK
from tests.helpers import IGNORE, INSTRUCTION, QUESTIONS, read_jsonl, run_lm_eval, write_local_task

logger = logging.getLogger(__name__)



def instances(lm, gen_kwargs: dict, n: int, task: str = "hf_test") -> list[Instance]:
    out = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)] + INSTRUCTION + " " * (i // len(QUESTIONS))
        context = lm.apply_chat_template([{"role": "user", "content": question}])
        out.append(Instance("generate_until", {}, (context, dict(gen_kwargs)), idx=0, metadata=(task, i, 1)))
    return out


def generate(lm, gen_kwargs: dict, n: int, task: str = "hf_test") -> tuple[list[str], dict[int, dict]]:
    SINK.pop(task)
    texts = lm.generate_until(instances(lm, gen_kwargs, n, task), disable_tqdm=True)
    return texts, {r["doc_id"]: r for r in SINK.pop(task)}


# -- model_args ------------------------------------------------------------------------------------------------


def test_bad_model_args_fail_before_any_weights_load(tiny_model, monkeypatch):
    import transformers

    from m1_models.hf_model import M1HF

    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    for kwargs, name in [
        ({"no_such_arg": 1}, "no_such_arg"),
        ({"tensor_parallel_size": 2}, "tensor_parallel_size"),
        ({"dtype": "float64x"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": "0"}, "batch_size"),
        ({"schedule": "waves"}, "schedule"),
        ({"max_model_len": 99_999}, "max_model_len"),
    ]:
        with pytest.raises(ModelArgsError, match=name) as error:
            M1HF(pretrained=str(tiny_model), **kwargs)
        assert "\n" not in str(error.value)
    with pytest.raises(ModelArgsError, match="not a folder that exists"):
        M1HF(pretrained="./no/such/model")
    lm = M1HF(pretrained=str(tiny_model), max_model_len=1024)
    assert lm._model is None and lm.max_model_len == 1024
    with pytest.raises(GenKwargsError, match="does not fit the context window"):
        lm.generate_until(instances(lm, {"max_tokens_thinking": 5000}, 2), disable_tqdm=True)
    with pytest.raises(GenKwargsError, match="frequency_penalty"):  # a vLLM sampling parameter m1-hf lacks
        lm.generate_until(instances(lm, {"max_tokens_thinking": 10, "frequency_penalty": 0.5}, 1), disable_tqdm=True)
    assert lm._model is None  # nothing loaded


def test_lm_eval_device_and_batch_size_defaults_do_not_clash_with_model_args(tiny_model, caplog):
    from m1_models.hf_model import M1HF

    lm = M1HF.create_from_arg_string(
        f"pretrained={tiny_model},device=cpu,batch_size=3", {"device": "cuda:0", "batch_size": 1}
    )
    assert lm._torch_device == "cpu" and lm.batch_size == 3
    with caplog.at_level("WARNING", logger="m1_models"):
        lm = M1HF.create_from_arg_string(f"pretrained={tiny_model}", {"device": "cuda:0", "batch_size": 1})
    import torch

    if not torch.cuda.is_available():  # lm-eval's default --device on a machine without CUDA
        assert lm._torch_device in ("cpu", "mps") and "CUDA is not available" in caplog.text
    assert lm.batch_size == 1


# -- the engine on its own ---------------------------------------------------------------------------------------


@pytest.mark.engine
def test_each_row_stops_at_its_own_stop_string_and_limit(hf_lm):
    """One left-padded batch of rows with different prompts and stops: each ends on its own terms."""
    engine = hf_lm.step_engine()
    tok = hf_lm.tokenizer
    thinking = instances(hf_lm, {}, 1)[0].args[0] + "<|im_start|>think\n"
    answered = thinking + "step 1: so the patient has fever.\n<|im_start|>answer\nThe answer is \\boxed{B}."
    greedy = {"temperature": 0}
    steps = {
        0: GenerationStep(tuple(tok.encode(thinking)), 60, ("step 2",), Phase.THINKING, greedy),  # multi-token
        1: GenerationStep(tuple(tok.encode(answered + "<|im_end|>\n")), 40, ("<|endoftext|>",), Phase.THINKING, greedy),
        2: GenerationStep(tuple(tok.encode(thinking)), 7, (), Phase.THINKING, greedy),
        3: GenerationStep(tuple(tok.encode(answered)), 40, ("never written",), Phase.THINKING, greedy),
        4: GenerationStep(tuple(tok.encode(thinking)), 40, (), Phase.THINKING, greedy),
    }
    for key, step in steps.items():
        engine.submit(key, step)
    results = dict(engine.poll())
    assert sorted(results) == [0, 1, 2, 3, 4] and engine.poll() == []
    # a stop string: the text cut before it, the ids through the token that completed it (as vLLM returns them)
    assert results[0].finish_reason == "stop" and "step 2" not in results[0].text
    assert tok.decode(results[0].token_ids).endswith("step 2") and "step 1" in results[0].text
    assert results[1].finish_reason == "stop" and results[1].text == ""  # a special token as the stop string
    assert tok.decode(results[1].token_ids) == "<|endoftext|>"
    assert results[2].finish_reason == "length" and len(results[2].token_ids) == 7
    assert results[2].text == tok.decode(results[2].token_ids)
    # EOS (<|im_end|> for the tiny model): its id kept, its text not
    assert results[3].finish_reason == "stop" and results[3].token_ids[-1] in engine.eos_ids
    assert results[3].text == tok.decode(results[3].token_ids[:-1])
    # the long rows were not cut by the short ones, nor the other way round
    assert results[4].finish_reason == "length" and len(results[4].token_ids) == 40
    assert tok.decode(results[4].token_ids).startswith(results[0].text + "step 2")


# -- parity with m1-vllm -----------------------------------------------------------------------------------------

PARITY_KWARGS = [
    {"max_tokens_thinking": 80, "thinking_n_ignore": 1, "max_tokens_answer": 24, "do_sample": False},
    {"max_tokens_thinking": 150, "max_tokens_answer": 24, "do_sample": False},
    {"max_tokens_thinking": 60, "thinking_n_ignore": 2, "thinking_n_ignore_str": IGNORE, "max_tokens_answer": 16,
     "do_sample": False},
    {"max_gen_toks": 48, "until": ["<|im_end|>"], "do_sample": False},
]  # fmt: skip
PER_SETTING = 8  # requests per gen_kwargs setting: 32 in all
ACCOUNTING = ("prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit", "budget")


@pytest.mark.engine
def test_greedy_responses_and_accounting_match_m1_vllm(hf_lm, vllm_lm):
    """Both in float32 (the tiny model's dtype; the session's m1-vllm engine is started with it): 32 greedy
    requests."""
    hf_texts, hf_records, vllm_texts, vllm_records = [], [], [], []
    for k, kwargs in enumerate(PARITY_KWARGS):
        task = f"hf_parity_{k}"
        texts, records = generate(hf_lm, kwargs, PER_SETTING, task)
        hf_texts += texts
        hf_records += [records[i] for i in range(PER_SETTING)]
        texts, records = generate(vllm_lm, kwargs, PER_SETTING, task)
        vllm_texts += texts
        vllm_records += [records[i] for i in range(PER_SETTING)]
    same = [a == b for a, b in zip(hf_texts, vllm_texts)]
    share = sum(same) / len(same)
    logger.warning("m1-hf vs m1-vllm, greedy: %d of %d responses byte-identical (%.0f%%)", sum(same), len(same),
                   100 * share)  # fmt: skip
    counted_alike = sum({f: h[f] for f in ACCOUNTING} == {f: v[f] for f in ACCOUNTING}
                        for h, v in zip(hf_records, vllm_records))  # fmt: skip
    differ = [i for i, identical in enumerate(same) if not identical]
    logger.warning("accounting equal on %d of %d requests; texts differ at %s", counted_alike, len(same), differ)
    for identical, hf, vl in zip(same, hf_records, vllm_records):
        assert hf["prompt_tokens"] == vl["prompt_tokens"] and hf["budget"] == vl["budget"]
        if identical:  # the same text must be counted the same way, field by field
            assert {f: hf[f] for f in ACCOUNTING} == {f: vl[f] for f in ACCOUNTING}
            assert (hf["thinking_text"], hf["answer_text"]) == (vl["thinking_text"], vl["answer_text"])
        for record in (hf, vl):
            assert record["budget"] is None or record["thinking_tokens"] <= record["budget"]
    assert share >= 0.8, f"only {sum(same)} of {len(same)} greedy responses agree"


# -- the plain lm_eval command -----------------------------------------------------------------------------------


@pytest.mark.cli
@pytest.mark.engine
def test_lm_eval_runs_m1_hf(tiny_model, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_local_task(tasks, "m1_hf_local", [q.split("\n")[0] for q in QUESTIONS], {"until": [], "max_gen_toks": 64})
    budget = 80
    result = run_lm_eval(
        ["--model", "m1-hf", "--model_args", f"pretrained={tiny_model},max_model_len=2048", "--batch_size", "4",
         "--tasks", "m1_hf_local", "--include_path", str(tasks), "--apply_chat_template",
         "--gen_kwargs", f"max_tokens_thinking={budget},thinking_n_ignore=1,max_tokens_answer=24,temperature=0.8",
         "--output_path", "out", "--log_samples"],
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "out").iterdir())
    samples = read_jsonl(next(run_dir.glob("samples_m1_hf_local_*.jsonl")))
    records = read_jsonl(next(run_dir.glob("m1_generations_m1_hf_local_*.jsonl")))
    assert len(samples) == len(records) == len(QUESTIONS)
    assert {r["doc_hash"] for r in records} == {s["doc_hash"] for s in samples}
    for record in records:
        assert record["model"] == str(tiny_model) and 0 < record["thinking_tokens"] <= budget
        assert record["answer_tokens"] >= 1
