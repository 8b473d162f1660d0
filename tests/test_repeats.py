"""lm-eval's ``repeats: K`` on the m1 models: K identical requests become K samples, each with its own seed, record
and ``--use_cache`` entry (a resumed run gives each sample back, not the first one K times); greedy repeats are
generated once (m1_models/step_sharing.py)."""

from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import CachingLM

from m1_models import lm_eval_model
from m1_models.records import REPEAT_KEY, RecordSink, number_repeats, repeat_args, request_hash
from tests.scripted_engine import EOS, ScriptedEngine
from tests.test_budget_forcing import PROMPT, ScriptedLM

ANSWER = " \\boxed{B}."


class SeededEngine(ScriptedEngine):
    """The scripted model sees the step's seed: sampled thinking differs from seed to seed."""

    def submit(self, key, step) -> None:
        self.seed = step.sampling.get("seed")
        super().submit(key, step)


def lm_with(sampled: bool) -> ScriptedLM:
    def model(prompt: str) -> str:
        if prompt.endswith(("<|im_start|>answer", "Final Answer:")):
            return ANSWER + EOS
        return ("t" * 5 + str(lm.engine.seed % 1000) if sampled else "t" * 9) + "<|im_start|>x"

    lm = ScriptedLM(model, max_model_len=4096)
    lm.engine = SeededEngine(model, tokens_per_poll=4096)
    return lm


def repeated(gen_kwargs: dict, k: int, task: str = "rep") -> list[Instance]:
    one = Instance("generate_until", {}, (PROMPT, dict(gen_kwargs)), 0, (task, 0, k))
    return [one] * k  # as lm-eval's evaluator clones a request with repeats: K


SAMPLED = {"max_tokens_thinking": 64, "temperature": 0.7}


def test_each_repeat_is_its_own_sample_with_its_own_seed_and_record(monkeypatch):
    lm = lm_with(sampled=True)
    lm.record_sink = RecordSink()
    texts = lm.generate_until(repeated(SAMPLED, 4), disable_tqdm=True)
    assert len(set(texts)) == 4
    records = sorted(lm.record_sink.pop("rep"), key=lambda r: r["repeat"])
    assert [r["repeat"] for r in records] == [0, 1, 2, 3]
    assert len({r["request_hash"] for r in records}) == 4
    assert records[0]["request_hash"] == request_hash(PROMPT, SAMPLED)  # the first sample is the request itself
    # the first sample is what a run without repeats gives
    single = lm_with(sampled=True)
    single.record_sink = RecordSink()
    assert single.generate_until(repeated(SAMPLED, 1), disable_tqdm=True) == texts[:1]


def test_greedy_repeats_are_generated_once():
    lm = lm_with(sampled=False)
    lm.record_sink = RecordSink()
    texts = lm.generate_until(repeated({"max_tokens_thinking": 64, "do_sample": False}, 8), disable_tqdm=True)
    assert len(set(texts)) == 1
    assert len(lm.engine.submitted) == 2  # one thinking step, one answer step
    assert sorted(r["reused_tokens"] > 0 for r in lm.record_sink.pop("rep")) == [False] + [True] * 7


def test_a_resumed_run_gives_every_repeat_back_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(lm_eval_model, "SINK", RecordSink())
    db = str(tmp_path / "cache.db")
    first = lm_with(sampled=True)
    texts = CachingLM(first, db).generate_until(repeated(SAMPLED, 4))
    assert len(set(texts)) == 4
    again = lm_with(sampled=True)
    resumed = CachingLM(again, db).generate_until(repeated(SAMPLED, 4))
    assert resumed == texts and again.engine.submitted == []  # all four from the cache, each its own
    # half the samples cached (a run killed after two): the other two are generated as repeats 2 and 3
    partial = CachingLM(lm_with(sampled=True), str(tmp_path / "partial.db"))
    partial.dbdict[__import__("lm_eval.api.model", fromlist=["hash_args"]).hash_args(
        "generate_until", repeat_args((PROMPT, SAMPLED), 1))] = texts[1]  # fmt: skip
    partial.dbdict.commit()
    assert partial.generate_until(repeated(SAMPLED, 2)) == texts[:2]


def test_numbering_keeps_the_first_and_marks_the_others():
    requests = repeated(SAMPLED, 3) + repeated({"max_tokens_thinking": 8}, 2)
    numbered = number_repeats(requests)
    assert numbered[0] is requests[0] and numbered[3] is requests[3]
    assert [r.args[1].get(REPEAT_KEY) for r in numbered] == [None, 1, 2, None, 1]
    assert requests[1].args[1] == SAMPLED  # the evaluator's own instances are left as they are


@pytest.mark.parametrize("bad", ["x", -1, 1.5])
def test_a_bad_repeat_number_is_a_user_error(bad):
    from m1_base.errors import GenKwargsError

    lm = lm_with(sampled=True)
    request = Instance("generate_until", {}, (PROMPT, {**SAMPLED, REPEAT_KEY: bad}), 0, ("rep", 0, 1))
    with pytest.raises(GenKwargsError, match=REPEAT_KEY):
        lm.generate_until([request], disable_tqdm=True)
