"""m1-vllm runs the steps of a forced request as one vLLM streaming-input session (``m1_models/vllm_engine.py``):
the KV stays between the steps and only the appended ids are prefilled.  These tests pin that it changes nothing
a greedy run returns, on the real engine (the session's ``vllm_lm``): the same texts and records as one vLLM
request per step with vLLM's own stop strings, also when a stop string is spelled from ordinary tokens (the session
is then cut where vLLM's text check cuts and the next step starts a new one); and that ``rounds`` with more
requests than the engine's slots finishes (sessions hold their slot between rounds).  (Both schedules' greedy
texts are pinned equal by tests/test_backend_contract.py.)
"""

from __future__ import annotations

import contextlib

import pytest
from lm_eval.api.instance import Instance

from m1_base.markers import ANSWER_MARKER, OVERFLOW_MARKER, THINKING_STOPS
from m1_models.records import RecordSink
from m1_models.vllm_engine import VLLMStepEngine, text_stop
from tests.helpers import INSTRUCTION, QUESTIONS

pytestmark = pytest.mark.engine

FORCED = {"max_tokens_thinking": 90, "thinking_n_ignore": 2, "max_tokens_answer": 24, "do_sample": False}


def question(i: int) -> str:
    return QUESTIONS[i % len(QUESTIONS)] + INSTRUCTION + " " * i


def requests(lm, gen_kwargs: dict, n: int, task: str) -> list[Instance]:
    return [
        Instance(
            "generate_until",
            {},
            (lm.apply_chat_template([{"role": "user", "content": question(i)}]), dict(gen_kwargs)),
            idx=0,
            metadata=(task, i, 1),
        )  # fmt: skip
        for i in range(n)
    ]


@contextlib.contextmanager
def engine_of(lm, engine):
    """Run ``lm`` on ``engine`` (another VLLMStepEngine over the same vLLM engine) for the block."""
    before = lm.step_engine()
    lm._engine = engine
    try:
        yield engine
    finally:
        lm._engine = before


def generate(lm, reqs: list[Instance]) -> tuple[list[str], list[dict]]:
    sink = RecordSink()
    before, lm.record_sink = lm.record_sink, sink
    try:
        texts = lm.generate_until(reqs, disable_tqdm=True)
    finally:
        lm.record_sink = before
    records = sorted(sink.pop(reqs[0].task_name), key=lambda r: r["doc_id"])
    return texts, [{k: v for k, v in r.items() if k not in ("cached_tokens", "schedule")} for r in records]


def test_text_stop_is_vllms_check_run_after_every_token(vllm_lm):
    tok = vllm_lm.tokenizer
    ids = tok.encode("step 1: the fever. <|im_") + tok.encode("start|>answer") + tok.encode(" more")
    assert "<|im_start|>" in tok.decode(ids) and tok.encode("<|im_start|>")[0] not in ids  # ordinary spelling
    end, text = text_stop(ids, ["<|im_start|>", "<|im_end|>"], tok.decode)
    assert text == "step 1: the fever. "
    assert "<|im_start|>" in tok.decode(ids[:end]) and "<|im_start|>" not in tok.decode(ids[: end - 1])
    # the earliest-completing stop string wins, whatever its place in the list
    end, text = text_stop(tok.encode("a fever then a rash"), ["rash", "fever"], tok.decode)
    assert text == "a "
    assert text_stop(ids, ["<|im_end|>"], tok.decode) is None
    assert text_stop(ids, [], tok.decode) is None


def test_sessions_return_what_one_request_per_step_returns(vllm_lm):
    engine = vllm_lm.step_engine()
    assert engine.sessions, "m1-vllm runs forced steps as sessions on this vLLM"
    reqs = requests(vllm_lm, FORCED, 6, "sessions_parity")
    reqs += requests(vllm_lm, {**FORCED, "max_tokens_thinking": 20}, 2, "sessions_parity")  # budget hits
    for i, r in enumerate(reqs):
        r.metadata = ("sessions_parity", i, 1)
    fresh = VLLMStepEngine(vllm_lm.llm.llm_engine, vllm_lm.tokenizer, sessions=False)
    with engine_of(vllm_lm, fresh):
        expected = generate(vllm_lm, reqs)
    assert generate(vllm_lm, reqs) == expected
    texts, records = expected
    assert any(r["ignore_rounds"] for r in records) and any(r["budget_hit"] for r in records)
    assert vllm_lm.llm.llm_engine.get_num_unfinished_requests() == 0 and not engine._sessions


def test_seeded_steps_in_a_session_draw_what_one_request_per_step_draws(vllm_lm):
    """Each seeded step draws from its own seed (m1_models/budget_forcing.py step_seed); in a session, the plugin
    m1_models/vllm_step_seeds.py, which vLLM loads in its worker, starts the stream again from it: the same texts
    as one vLLM request per step, and the steps did run in sessions."""
    engine = vllm_lm.step_engine()
    assert engine._reseeds, "vLLM loads the m1_eval_step_seeds plugin (pyproject.toml entry point)"
    sampled = {**FORCED, "do_sample": True, "temperature": 0.9}
    reqs = requests(vllm_lm, sampled, 6, "sessions_seeded")
    fresh = VLLMStepEngine(vllm_lm.llm.llm_engine, vllm_lm.tokenizer, sessions=False)
    with engine_of(vllm_lm, fresh):
        expected = generate(vllm_lm, reqs)
    core = engine._engine.engine_core
    resumable: list[str] = []
    add_request = core.add_request

    def watched(request, *args, **kwargs):
        if request.resumable:
            resumable.append(request.request_id)
        return add_request(request, *args, **kwargs)

    core.add_request = watched
    try:
        assert generate(vllm_lm, reqs) == expected
    finally:
        del core.add_request
    texts, records = expected
    assert len(set(texts)) == 6 and any(r["ignore_rounds"] for r in records)
    assert len(resumable) >= sum(len(r["finish_reasons"]) for r in records)  # every step in a session


def test_a_session_sends_only_the_appended_ids(vllm_lm):
    engine = vllm_lm.step_engine()
    core = engine._engine.engine_core
    sent: list[tuple[str, int, bool]] = []
    add_request = core.add_request

    def watched(request, *args, **kwargs):
        sent.append((request.request_id, len(request.prompt_token_ids or ()), request.resumable))
        return add_request(request, *args, **kwargs)

    core.add_request = watched
    try:
        texts, records = generate(vllm_lm, requests(vllm_lm, FORCED, 3, "sessions_wire"))
    finally:
        del core.add_request
    steps = sum(len(r["finish_reasons"]) for r in records)
    resumable = [s for s in sent if s[2]]
    assert len(resumable) == steps and len({s[0] for s in resumable}) == 3  # one session per request
    first = {}
    for request_id, n, _ in resumable:
        first.setdefault(request_id, n)
    later = [n for request_id, n, _ in resumable if n != first[request_id]]
    # at most the longest appended string, plus the id the step ended with when it ran to its limit (vLLM keeps
    # the KV of every generated id but the last)
    tok = vllm_lm.tokenizer
    appended = max(len(tok.encode(text)) for text in ("\n" + OVERFLOW_MARKER, "\n" + ANSWER_MARKER, " Wait"))
    assert later and max(later) <= appended + 1, "a continuation re-sent more than the appended ids"
    assert len([s for s in sent if not s[2]]) == 3  # each session ended after its answer


def test_a_stop_string_spelled_from_ordinary_tokens_ends_where_vllms_check_ends(vllm_lm):
    """A stop string the engine cannot stop on by id (here " the", declared a special token to the engine only)
    is found in the text, cut as vLLM cuts it, and the request goes on in a new session: the texts and records
    equal vLLM's own stop strings."""
    gen_kwargs = {**FORCED, "until_thinking": [*THINKING_STOPS, " the"]}
    reqs = requests(vllm_lm, gen_kwargs, 4, "sessions_spelled")
    fresh = VLLMStepEngine(vllm_lm.llm.llm_engine, vllm_lm.tokenizer, sessions=False)
    with engine_of(vllm_lm, fresh):
        expected = generate(vllm_lm, reqs)
    tricked = VLLMStepEngine(vllm_lm.llm.llm_engine, vllm_lm.tokenizer)
    tricked._special = {**tricked._special, " the": tricked._special["<|im_end|>"]}
    with engine_of(vllm_lm, tricked):
        got = generate(vllm_lm, reqs)
    assert got == expected
    steps = sum(len(r["finish_reasons"]) for r in expected[1])
    assert next(tricked._ids) > len(reqs), "no stop string was cut from a session: the test did not test"
    assert next(tricked._ids) <= steps + 1
    assert any(r["ignore_rounds"] for r in expected[1])
    assert vllm_lm.llm.llm_engine.get_num_unfinished_requests() == 0 and not tricked._sessions


def test_rounds_with_more_requests_than_the_engines_slots_finish(vllm_lm, monkeypatch):
    """Between rounds every session keeps its scheduler slot: the rounds schedule goes in waves of the engine's
    max_num_seqs (here pretended to be 3), or the fourth request could never be scheduled."""
    engine = vllm_lm.step_engine()
    short = {**FORCED, "max_tokens_thinking": 40, "max_tokens_answer": 16}  # long greedy texts flip between batches
    reqs = requests(vllm_lm, short, 7, "sessions_waves")
    continuous = generate(vllm_lm, reqs)
    sizes: list[int] = []
    submit = engine.submit

    def counting_submit(key, step):
        submit(key, step)
        sizes.append(len(engine._sessions))

    monkeypatch.setattr(VLLMStepEngine, "max_open_requests", property(lambda self: 3))
    monkeypatch.setattr(engine, "submit", counting_submit)
    monkeypatch.setattr(vllm_lm, "schedule", "rounds")
    assert generate(vllm_lm, reqs) == continuous
    assert max(sizes) == 3


def test_plain_generations_stopped_by_id_return_what_vllms_stop_strings_return(vllm_lm):
    """Without forcing, a request whose stop strings are special tokens (or none: m1's tasks stop at EOS) is
    stopped by id and decoded once; one with an ordinary stop string keeps vLLM's own; all as vLLM returns them."""
    reqs = []
    for k, until in enumerate(([], ["<|im_end|>"], ["<|im_start|>", "<|im_end|>"], [" the"])):
        for r in requests(vllm_lm, {"until": until, "max_gen_toks": 48, "do_sample": False}, 3, "sessions_plain"):
            r.metadata = ("sessions_plain", len(reqs), 1)
            reqs.append(r)
    fresh = VLLMStepEngine(vllm_lm.llm.llm_engine, vllm_lm.tokenizer, sessions=False)
    with engine_of(vllm_lm, fresh):
        expected = generate(vllm_lm, reqs)
    engine = vllm_lm.step_engine()
    sent = []
    add_request = engine._engine.add_request

    def watched(request_id, prompt, params, *args, **kwargs):
        sent.append(params.detokenize)
        return add_request(request_id, prompt, params, *args, **kwargs)

    engine._engine.add_request = watched
    try:
        assert generate(vllm_lm, reqs) == expected
    finally:
        del engine._engine.add_request
    assert sent == [False] * 9 + [True] * 3  # by id, decoded once; vLLM's stop string for " the"
    assert any(r["finish_reasons"] == ["stop"] for r in expected[1])
