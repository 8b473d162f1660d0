"""The budget-forcing controller against a scripted engine: every branch of docs/budget-forcing.md."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lm_eval.api.instance import Instance
from lm_eval.utils import simple_parse_args_string

from m1_base.errors import GenKwargsError
from m1_models import lm_eval_model
from m1_models.budget_forcing import ForcedRequest, kept_ids, step_seed
from m1_models.engine_types import Phase, StepResult
from m1_models.records import RecordSink
from m1_models.scheduling import run
from m1_models.settings import parse_gen_kwargs
from tests.scripted_engine import EOS, CharTokenizer, ScriptedEngine

TOK = CharTokenizer()
SAMPLING_KEYS = frozenset({"temperature", "top_p", "seed"})
ANSWER = "The answer is \\boxed{B}."
PROMPT = "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"


def thinker(lengths: list[int], stop: str = "<|im_start|>answer\n", answer: str = ANSWER):
    """A model that thinks lengths[i] characters in round i (rounds counted by the 'Wait's) and then stops."""

    def model(prompt: str) -> str:
        if prompt.endswith(("<|im_start|>answer", "Final Answer:", "<|im_start|>answer\n")):
            return answer + "<|im_end|>more"
        rounds = prompt.count("Wait")
        n = lengths[min(rounds, len(lengths) - 1)]
        return "t" * n + stop + "junk"

    return model


def never_stops(prompt: str) -> str:
    if prompt.endswith(("<|im_start|>answer", "Final Answer:")):
        return ANSWER + EOS
    return "z" * 100_000


def forced(gen_kwargs: dict, model, prompt: str = PROMPT, max_model_len: int = 10_000):
    settings = parse_gen_kwargs(gen_kwargs, SAMPLING_KEYS)
    request = ForcedRequest(TOK.encode(prompt), settings, TOK, max_model_len)
    engine = ScriptedEngine(model)
    run([request], engine)
    return request, engine


def thinking_of(request: ForcedRequest) -> str:
    return TOK.decode(request._thinking_ids)


def test_stop_before_budget_appends_answer_marker_and_answers():
    request, engine = forced({"max_tokens_thinking": 50}, thinker([10]))
    text = request.output_text()
    assert text == "<|im_start|>think\n" + "t" * 10 + "\n<|im_start|>answer" + ANSWER
    assert request.record.thinking_tokens == 10
    assert request.record.budget_hit is False
    assert request.record.finish_reasons == ["stop", "stop"]
    assert request.record.answer_tokens == len(ANSWER)
    assert [step.phase for _, _, step in engine.submitted] == [Phase.THINKING, Phase.ANSWER]
    # the answer phase continued exactly from the ids the model produced plus the marker ids
    answer_prompt = TOK.decode(engine.submitted[1][2].prompt_ids)
    assert answer_prompt == PROMPT + "<|im_start|>think\n" + "t" * 10 + "\n<|im_start|>answer"


def test_budget_exhausted_uses_overflow_marker_and_exact_budget():
    request, engine = forced({"max_tokens_thinking": 37}, never_stops)
    assert request.record.thinking_tokens == 37
    assert request.record.budget_hit is True
    assert request.record.finish_reasons[0] == "length"
    assert engine.submitted[0][2].max_tokens == 37
    assert request.output_text().endswith("z\n<|im_start|>answer\nFinal Answer:" + ANSWER)


def test_ignore_rounds_append_wait_and_shrink_the_budget():
    request, engine = forced({"max_tokens_thinking": 100, "thinking_n_ignore": 2}, thinker([5, 6, 7]))
    thinking = thinking_of(request)
    assert thinking == "ttttt" + "Wait" + "tttttt" + "Wait" + "ttttttt"
    assert request.record.ignore_rounds == 2
    assert request.record.thinking_tokens == 5 + 4 + 6 + 4 + 7
    limits = [step.max_tokens for _, _, step in engine.submitted if step.phase is Phase.THINKING]
    assert limits == [100, 100 - 9, 100 - 9 - 10]
    assert request.output_text().count("Wait") == 2
    assert request.record.budget_hit is False


def test_ignore_rounds_exhausted_then_answer():
    request, _ = forced({"max_tokens_thinking": 1000, "thinking_n_ignore": 1}, thinker([3]))
    assert request.record.ignore_rounds == 1
    assert request.record.finish_reasons == ["stop", "stop", "stop"]
    assert request.output_text().endswith("tttWaitttt\n<|im_start|>answer" + ANSWER)


def test_ignore_string_that_would_reach_the_budget_stops_forcing():
    # 5 thought + 4 for "Wait" = 9, which reaches a budget of 9: no Wait, answer with the normal marker
    request, engine = forced({"max_tokens_thinking": 9, "thinking_n_ignore": 3}, thinker([5]))
    assert "Wait" not in request.output_text()
    assert request.record.ignore_rounds == 0
    assert request.record.thinking_tokens == 5
    assert request.output_text().endswith("ttttt\n<|im_start|>answer" + ANSWER)
    # with room for the Wait but not for more thought, the round runs into the budget
    request, _ = forced({"max_tokens_thinking": 12, "thinking_n_ignore": 3}, thinker([5]))
    assert request.record.ignore_rounds == 1
    assert request.record.thinking_tokens == 12
    assert request.record.budget_hit is True
    assert thinking_of(request) == "tttttWaitttt"


def test_empty_generations_still_count_rounds():
    request, _ = forced({"max_tokens_thinking": 50, "thinking_n_ignore": 2}, thinker([0]))
    assert thinking_of(request) == "WaitWait"
    assert request.record.thinking_tokens == 8
    assert request.record.ignore_rounds == 2
    assert request.output_text() == "<|im_start|>think\nWaitWait\n<|im_start|>answer" + ANSWER


def test_thinking_ending_in_newline_gets_no_extra_newline():
    request, _ = forced({"max_tokens_thinking": 50}, thinker([4], stop="\n<|im_start|>"))
    assert request.output_text() == "<|im_start|>think\ntttt\n<|im_start|>answer" + ANSWER


def test_multi_token_stop_string_is_not_kept_in_ids_or_text():
    model = thinker([6], stop="</think>")
    request, engine = forced({"max_tokens_thinking": 50, "until_thinking": ["</think>"]}, model)
    assert thinking_of(request) == "t" * 6
    assert request.record.thinking_tokens == 6
    answer_prompt = TOK.decode(engine.submitted[1][2].prompt_ids)
    assert "</think>" not in answer_prompt


def test_kept_ids_drops_a_stop_string_that_began_mid_token():
    class PairTokenizer(CharTokenizer):  # id 1000 decodes to "a<" : a stop "<s>" starts inside it
        def decode(self, ids):
            return "".join("a<" if i == 1000 else chr(i) for i in ids)

    result = StepResult(token_ids=(ord("x"), 1000, ord("s"), ord(">")), text="xa", finish_reason="stop")
    ids, text = kept_ids(result, PairTokenizer())
    assert ids == (ord("x"),)
    assert text == "x"


def test_auto_budget_fills_the_context_window():
    settings = parse_gen_kwargs({"max_tokens_thinking": "auto", "max_tokens_answer": 100}, SAMPLING_KEYS)
    request = ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=1000)
    markers = len("<|im_start|>think\n") + len("\n<|im_start|>answer\nFinal Answer:")
    assert request.budget == 1000 - len(PROMPT) - markers - 100
    engine = ScriptedEngine(never_stops)
    run([request], engine)
    assert request.record.thinking_tokens == request.budget
    # everything fits: prompt + thinking + markers + answer <= the window
    assert len(request.ids) <= 1000


def test_without_budget_the_model_generates_once():
    model = thinker([20])
    request, engine = forced({"until": ["junk"], "max_gen_toks": 500}, model)
    assert len(engine.submitted) == 1
    step = engine.submitted[0][2]
    assert step.phase is Phase.PLAIN and step.max_tokens == 500 and step.stop == ("junk",)
    assert request.output_text() == "t" * 20 + "<|im_start|>answer\n"
    assert request.record.forced is False


def test_s1_preset_markers_and_answer_cap():
    request, engine = forced({"max_tokens_thinking": 30, "budget_preset": "s1", "max_gen_toks": 77}, thinker([4]))
    assert request.output_text().startswith("<|im_start|>think" + "tttt")
    assert engine.submitted[-1][2].max_tokens == 77
    assert engine.submitted[0][2].stop == ("<|im_start|>",)


def test_sampling_parameters_reach_every_step():
    request, engine = forced({"max_tokens_thinking": 30, "temperature": 0.7, "seed": 3}, thinker([4]))
    # each step its own seed, a function of the request's seed and where the step starts only
    starts = [len(step.prompt_ids) for _, _, step in engine.submitted]
    assert [step.sampling for _, _, step in engine.submitted] == [
        {"temperature": 0.7, "seed": step_seed(3, start)} for start in starts
    ]
    assert len(starts) == 2 and len({step_seed(3, start) for start in starts}) == 2
    assert step_seed(3, starts[0]) == step_seed(3, starts[0]) != step_seed(4, starts[0])
    plain, engine = forced({"temperature": 0.7, "seed": 3}, thinker([4]))
    assert engine.submitted[0][2].sampling == {"temperature": 0.7, "seed": 3}  # one plain step: the seed as given
    settings = parse_gen_kwargs({"do_sample": False}, SAMPLING_KEYS)
    assert settings.sampling == {"temperature": 0.0}


def test_continuous_schedule_moves_each_request_on_at_once():
    # the slow request differs from round to round: a round-by-round schedule waits for each one in turn
    lengths = [[2, 60], [60, 2], [3, 3], [30, 30]]
    models = {f"P{i}": thinker(ls) for i, ls in enumerate(lengths)}

    def model(prompt: str) -> str:
        return models[prompt[:2]](prompt)

    outputs = {}
    for schedule in ("continuous", "rounds"):
        requests = [
            ForcedRequest(
                TOK.encode(f"P{i}"),
                parse_gen_kwargs({"max_tokens_thinking": 200, "thinking_n_ignore": 1}, SAMPLING_KEYS),
                TOK,
                10_000,
            )
            for i in range(4)
        ]
        engine = ScriptedEngine(model)
        finished_order: list[int] = []
        run(requests, engine, schedule, on_done=finished_order.append)
        outputs[schedule] = ([r.output_text() for r in requests], engine.clock, finished_order)
    assert outputs["continuous"][0] == outputs["rounds"][0]  # same texts, different timing
    # continuously scheduled, the short requests finish while the long ones still think
    assert outputs["continuous"][2][0] == 2
    # ~60 + 4 + 2 + answer steps instead of ~60 + 60 + answer: the engine finishes sooner
    assert outputs["continuous"][1] < 0.75 * outputs["rounds"][1]


@pytest.mark.parametrize(
    "gen_kwargs, key",
    [
        ({"max_tokens_thinking": 10, "max_tokens_thinkng": 5}, "max_tokens_thinkng"),
        ({"max_tokens_thinking": 0}, "max_tokens_thinking"),
        ({"max_tokens_thinking": -5}, "max_tokens_thinking"),
        ({"max_tokens_thinking": "lots"}, "max_tokens_thinking"),
        ({"max_tokens_thinking": 10, "thinking_n_ignore": -1}, "thinking_n_ignore"),
        ({"max_tokens_thinking": 10, "budget_preset": "s2"}, "budget_preset"),
        ({"thinking_n_ignore": 2}, "max_tokens_thinking"),
        ({"max_tokens_thinking": 10, "max_tokens_answer": 0}, "max_tokens_answer"),
    ],
)
def test_bad_gen_kwargs_are_one_line_errors_naming_the_key(gen_kwargs, key):
    with pytest.raises(GenKwargsError) as error:
        parse_gen_kwargs(gen_kwargs, SAMPLING_KEYS)
    message = str(error.value)
    assert key in message and "\n" not in message


def test_budget_larger_than_the_context_window_is_rejected_before_generation():
    settings = parse_gen_kwargs({"max_tokens_thinking": 5000}, SAMPLING_KEYS)
    with pytest.raises(GenKwargsError, match="max_tokens_thinking=5000 does not fit the context window"):
        ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=4096)
    settings = parse_gen_kwargs({"max_tokens_thinking": "auto", "max_tokens_answer": 4000}, SAMPLING_KEYS)
    with pytest.raises(GenKwargsError, match="auto leaves no thinking room"):
        ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=4096)


@pytest.mark.parametrize("off", [None, "none", "None"])
def test_budget_can_be_switched_off_explicitly(off):
    settings = parse_gen_kwargs({"max_tokens_thinking": off, "max_gen_toks": 9}, SAMPLING_KEYS)
    assert settings.forcing.forced is False and settings.max_gen_toks == 9


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_budget_is_an_error_not_a_run_without_forcing(empty):
    """``max_tokens_thinking=$B`` with B unset: one line, never a silent unforced run."""
    with pytest.raises(GenKwargsError, match=r"max_tokens_thinking=\(empty\) is empty.*none for a run without"):
        parse_gen_kwargs({"max_tokens_thinking": empty}, SAMPLING_KEYS)


# -- budget_preset=s1: the s1 fork's behaviour (github.com/simplescaling/s1, commit 77272c6,
#    eval/lm-evaluation-harness/lm_eval/models/vllm_causallms.py, _model_generate) -----------------------------

S1 = {"budget_preset": "s1"}
S1_START = "<|im_start|>think"
S1_OVERFLOW = "<|im_start|>answer\nFinal Answer:"


def scripted(replies: list[str], answer: str = ANSWER + EOS):
    """A model whose thinking step i writes replies[i]; after an answer marker it writes ``answer``."""
    pending = iter(replies)

    def model(prompt: str) -> str:
        if prompt.endswith(("<|im_start|>answer", "Final Answer:")):
            return answer
        return next(pending)

    return model


def steps_of(engine: ScriptedEngine, key: int | None = None):
    return [step for _, k, step in engine.submitted if key is None or k == key]


def test_s1_newline_before_the_marker_only_when_the_budget_ran_out():
    stopped, engine = forced({**S1, "max_tokens_thinking": 50}, scripted(["tttt<|im_start|>answer junk"]))
    assert stopped.record.budget_hit is False
    assert stopped.output_text() == S1_START + "tttt" + "<|im_start|>answer" + ANSWER
    assert TOK.decode(steps_of(engine)[1].prompt_ids) == PROMPT + S1_START + "tttt<|im_start|>answer"

    overflow, _ = forced({**S1, "max_tokens_thinking": 37}, never_stops)
    assert overflow.record.budget_hit is True
    assert overflow.output_text() == S1_START + "z" * 37 + "\n" + S1_OVERFLOW + ANSWER
    # on overflow a thinking that already ends in a newline gets none
    lines, _ = forced({**S1, "max_tokens_thinking": 30}, scripted(["zz\n" * 20]))
    assert lines.output_text() == S1_START + "zz\n" * 10 + S1_OVERFLOW + ANSWER

    # m1 puts the newline before either marker
    m1, _ = forced({"max_tokens_thinking": 50}, scripted(["tttt<|im_start|>answer junk"]))
    assert m1.output_text() == "<|im_start|>think\ntttt\n<|im_start|>answer" + ANSWER


def test_s1_answer_stops_at_the_task_until_and_eos_not_at_the_thinking_stops():
    answer = "B<|im_start|>user\nmore Question: next" + EOS
    gen = {**S1, "max_tokens_thinking": 50, "until": ["Question:"]}
    request, engine = forced(gen, scripted(["tt<|im_start|>"], answer))
    thinking, answering = steps_of(engine)
    assert thinking.stop == ("<|im_start|>", "Question:")  # s1 extends until_thinking with lm-eval's stop list
    assert answering.stop == ("Question:",)
    assert request.record.answer_text == "B<|im_start|>user\nmore "

    # no task until (the s1 and m1 tasks set until: []): the answer runs to EOS, past <|im_start|>
    request, engine = forced({**S1, "max_tokens_thinking": 50, "until": []}, scripted(["tt<|im_start|>"], answer))
    assert steps_of(engine)[-1].stop == ()
    assert request.record.answer_text == "B<|im_start|>user\nmore Question: next"
    assert request.record.finish_reasons == ["stop", "stop"]

    # m1: thinking and answer stop at until_thinking; the task's until plays no part
    request, engine = forced({"max_tokens_thinking": 50, "until": ["Question:"]}, scripted(["tt<|im_start|>"], answer))
    assert [step.stop for step in steps_of(engine)] == [("<|im_start|>", "<|im_end|>")] * 2
    assert request.record.answer_text == "B"


def test_s1_sets_min_tokens_1_on_thinking_steps_when_ignoring():
    gen = {**S1, "max_tokens_thinking": 100, "thinking_n_ignore": 2, "thinking_n_ignore_str": "Wait"}
    request, engine = forced(gen, thinker([5, 6, 7], stop="<|im_start|>"))
    assert request.record.ignore_rounds == 2
    assert [(step.phase, step.min_tokens) for step in steps_of(engine)] == [
        (Phase.THINKING, 1),
        (Phase.THINKING, 1),
        (Phase.THINKING, 1),
        (Phase.ANSWER, 0),
    ]
    # s1 keys it on thinking_n_ignore being passed ("is not None"), so =0 still sets it
    _, engine = forced({**S1, "max_tokens_thinking": 100, "thinking_n_ignore": 0}, thinker([5], stop="<|im_start|>"))
    assert [step.min_tokens for step in steps_of(engine)] == [1, 0]
    # without thinking_n_ignore s1 sets no minimum, and m1 never does
    _, engine = forced({**S1, "max_tokens_thinking": 100}, thinker([5], stop="<|im_start|>"))
    assert [step.min_tokens for step in steps_of(engine)] == [0, 0]
    _, engine = forced({"max_tokens_thinking": 100, "thinking_n_ignore": 2}, thinker([5, 6, 7]))
    assert [step.min_tokens for step in steps_of(engine)] == [0, 0, 0, 0]


class MarkerTokenizer(CharTokenizer):
    """Like CharTokenizer, but ``<|im_start|>`` is one token (as in a chat model's tokenizer)."""

    MARKER, MARKER_ID = "<|im_start|>", 0xE000

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, part in enumerate(text.split(self.MARKER)):
            ids += [self.MARKER_ID] * (i > 0) + super().encode(part)
        return ids

    def decode(self, ids) -> str:
        return "".join(self.MARKER if i == self.MARKER_ID else chr(i) for i in ids)


def test_s1_min_tokens_steps_also_send_single_token_stops_as_ids():
    # vLLM holds back EOS and stop_token_ids during min_tokens but does not see a stop *string* completed within
    # them; s1 passes its stops as stop_token_ids for that reason
    tok = MarkerTokenizer()
    gen = {**S1, "max_tokens_thinking": 100, "thinking_n_ignore": 1, "until": ["Question:"]}
    step = ForcedRequest(tok.encode(PROMPT), parse_gen_kwargs(gen, SAMPLING_KEYS), tok, 10_000).next_step()
    assert step.min_tokens == 1
    assert step.stop == ("<|im_start|>", "Question:")
    assert step.stop_token_ids == (MarkerTokenizer.MARKER_ID,)  # "Question:" is 9 tokens: a stop string only
    gen = {**S1, "max_tokens_thinking": 100, "until": ["Question:"]}
    step = ForcedRequest(tok.encode(PROMPT), parse_gen_kwargs(gen, SAMPLING_KEYS), tok, 10_000).next_step()
    assert (step.min_tokens, step.stop_token_ids) == (0, ())


def test_s1_ignore_rounds_append_nothing_unless_a_string_is_given():
    # s1's thinking_n_ignore_str defaults to None: the round just goes on from the ids without the stop string
    model = scripted(["aaa<|im_start|>x", "bb<|im_start|>x", "c<|im_start|>x"])
    request, engine = forced({**S1, "max_tokens_thinking": 100, "thinking_n_ignore": 2}, model)
    assert thinking_of(request) == "aaabbc"
    assert (request.record.ignore_rounds, request.record.thinking_tokens) == (2, 6)
    assert TOK.decode(steps_of(engine)[1].prompt_ids) == PROMPT + S1_START + "aaa"
    assert request.output_text() == S1_START + "aaabbc<|im_start|>answer" + ANSWER


def test_s1_auto_is_max_gen_toks_minus_longest_prompt_markers_and_margin():
    prompts = [PROMPT, PROMPT.replace("Q?", "Q" * 300 + "?")]
    longest = len(prompts[1])
    gen = {**S1, "max_tokens_thinking": "auto", "max_gen_toks": 2000}
    requests = [
        ForcedRequest(TOK.encode(p), parse_gen_kwargs(gen, SAMPLING_KEYS), TOK, 2000, longest_prompt=longest)
        for p in prompts
    ]
    expected = 2000 - longest - len(S1_START) - len(S1_OVERFLOW) - 100
    assert [r.budget for r in requests] == [expected, expected]  # one budget for the batch, as in s1
    engine = ScriptedEngine(never_stops)
    run(requests, engine)
    for key, request in enumerate(requests):
        assert request.record.thinking_tokens == expected and request.record.budget_hit is True
        assert len(request.ids) <= 2000
        # the answer gets what the window leaves (s1 asks vLLM for max_gen_toks, which stops at the window)
        answer_step = steps_of(engine, key)[-1]
        assert answer_step.phase is Phase.ANSWER
        assert answer_step.max_tokens == 2000 - len(answer_step.prompt_ids)
    assert steps_of(engine, 1)[-1].max_tokens == 100 - 1  # the margin, less the newline before the marker
    # a single request (no batch given) uses its own prompt
    alone = ForcedRequest(TOK.encode(PROMPT), parse_gen_kwargs(gen, SAMPLING_KEYS), TOK, 2000)
    assert alone.budget == 2000 - len(PROMPT) - len(S1_START) - len(S1_OVERFLOW) - 100

    # m1's auto is unchanged: per request, the window less the prompt, markers and max_tokens_answer
    m1 = parse_gen_kwargs({"max_tokens_thinking": "auto", "max_tokens_answer": 100}, SAMPLING_KEYS)
    request = ForcedRequest(TOK.encode(PROMPT), m1, TOK, 1000, longest_prompt=900)
    assert request.budget == 1000 - len(PROMPT) - len("<|im_start|>think\n") - len("\n" + S1_OVERFLOW) - 100


def test_s1_auto_that_cannot_fit_the_context_window_is_rejected_before_generation():
    settings = parse_gen_kwargs({**S1, "max_tokens_thinking": "auto", "max_gen_toks": 32768}, SAMPLING_KEYS)
    with pytest.raises(GenKwargsError) as error:
        ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=16384)
    message = str(error.value)
    assert "does not fit the context window" in message and "\n" not in message
    assert "lower max_gen_toks to at most max_model_len or raise max_model_len" in message
    settings = parse_gen_kwargs({**S1, "max_tokens_thinking": "auto", "max_gen_toks": 100}, SAMPLING_KEYS)
    with pytest.raises(GenKwargsError, match=r"leaves no thinking room: max_gen_toks=100 - longest prompt"):
        ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=32768)


def test_s1_fixed_budget_leaves_the_answer_the_rest_of_the_window():
    # s1's `max_gen_toks=32768,max_tokens_thinking=8000` at a 32768 window: the answer is not reserved 32768
    settings = parse_gen_kwargs({**S1, "max_tokens_thinking": 8000, "max_gen_toks": 32768}, SAMPLING_KEYS)
    request = ForcedRequest(TOK.encode(PROMPT), settings, TOK, max_model_len=32768)
    engine = ScriptedEngine(never_stops, tokens_per_poll=4096)
    run([request], engine)
    answer_step = steps_of(engine)[-1]
    assert answer_step.max_tokens == 32768 - len(answer_step.prompt_ids)
    # a budget must still leave one answer token after the prompt and the markers
    room = 1000 - len(PROMPT) - len(S1_START) - len("\n" + S1_OVERFLOW) - 1
    ForcedRequest(TOK.encode(PROMPT), parse_gen_kwargs({**S1, "max_tokens_thinking": room}, SAMPLING_KEYS), TOK, 1000)
    with pytest.raises(GenKwargsError, match=f"max_tokens_thinking={room + 1} does not fit.*1 answer token"):
        too_big = parse_gen_kwargs({**S1, "max_tokens_thinking": room + 1}, SAMPLING_KEYS)
        ForcedRequest(TOK.encode(PROMPT), too_big, TOK, 1000)


class ScriptedLM(lm_eval_model.M1LM):
    """M1LM over the scripted engine and the one-character tokenizer."""

    def __init__(self, model, max_model_len: int) -> None:
        vocab = {"<|im_start|>": 0, "<|im_end|>": 1}
        tokenizer = SimpleNamespace(
            name="chars",
            bos_token_id=None,
            chat_template=None,
            encode=TOK.encode,
            decode=TOK.decode,
            has_token=vocab.__contains__,
        )
        self.engine = ScriptedEngine(model, tokens_per_poll=4096)
        backend = lm_eval_model.Backend("scripted", tokenizer, max_model_len, SAMPLING_KEYS, lambda: self.engine)
        super().__init__(backend)


LONG_PROMPT = PROMPT.replace("Q?", "Q" * 3000 + "?")


def long_or_short(prompt: str) -> str:
    """The long question thinks past any budget; the others think 10 tokens per round and stop."""
    if prompt.endswith(("<|im_start|>answer", "Final Answer:")):
        return ANSWER + EOS
    if prompt.startswith(LONG_PROMPT):
        return "z" * 100_000
    return "t" * 10 + "<|im_start|>junk"


@pytest.mark.parametrize("preset", ["s1", "m1"])
def test_s1_documented_command_runs_with_a_32768_window(preset, monkeypatch):
    monkeypatch.setattr(lm_eval_model, "SINK", RecordSink())
    cli = simple_parse_args_string("max_gen_toks=32768,max_tokens_thinking=auto,thinking_n_ignore=1")
    task = {"until": [], "do_sample": False, "max_gen_toks": 2048}  # the m1 tasks' generation_kwargs
    gen_kwargs = {**task, **cli, "budget_preset": preset}
    prompts = [PROMPT, LONG_PROMPT, PROMPT.replace("Q?", "R?")]
    requests = [
        Instance("generate_until", {}, (p, dict(gen_kwargs)), i, ("s1_cli", i, 1)) for i, p in enumerate(prompts)
    ]
    lm = ScriptedLM(long_or_short, max_model_len=32768)
    outputs = lm.generate_until(requests, disable_tqdm=True)

    engine = lm.engine
    assert all(len(step.prompt_ids) + step.max_tokens <= 32768 for step in steps_of(engine))
    long_thinking = [s for s in steps_of(engine, 1) if s.phase is Phase.THINKING]
    assert len(long_thinking) == 1 and long_thinking[0].max_tokens > 28_000  # ran into its budget
    if preset == "s1":
        budget = 32768 - len(LONG_PROMPT) - len(S1_START) - len(S1_OVERFLOW) - 100
        assert long_thinking[0].max_tokens == budget
        assert steps_of(engine, 0)[0].max_tokens == budget  # the short prompts get the batch's budget too
        assert outputs[1] == S1_START + "z" * budget + "\n" + S1_OVERFLOW + ANSWER
        assert steps_of(engine, 1)[-1].max_tokens == 99
        # the short ones stop, get one ignore round (nothing appended: no thinking_n_ignore_str) and answer
        assert outputs[0] == outputs[2] == S1_START + "t" * 20 + "<|im_start|>answer" + ANSWER
        assert [s.min_tokens for s in steps_of(engine, 0)] == [1, 1, 0]
    else:
        assert outputs[0] == "<|im_start|>think\n" + "t" * 10 + "Wait" + "t" * 10 + "\n<|im_start|>answer" + ANSWER
        assert all(step.min_tokens == 0 for step in steps_of(engine))


def test_s1_auto_takes_the_longest_prompt_of_requests_with_the_same_gen_kwargs(monkeypatch):
    # s1 computes auto per batch, and lm-eval batches (--batch_size auto) by identical gen_kwargs
    monkeypatch.setattr(lm_eval_model, "SINK", RecordSink())
    first = {**S1, "max_tokens_thinking": "auto", "max_gen_toks": 5000, "until": []}
    second = {**first, "temperature": 0.0}
    prompts = [(PROMPT, first), (LONG_PROMPT, first), (PROMPT, second)]
    requests = [
        Instance("generate_until", {}, (p, dict(g)), i, ("s1_groups", i, 1)) for i, (p, g) in enumerate(prompts)
    ]
    lm = ScriptedLM(long_or_short, max_model_len=5000)
    lm.generate_until(requests, disable_tqdm=True)
    budgets = [steps_of(lm.engine, key)[0].max_tokens for key in range(3)]
    markers = len(S1_START) + len(S1_OVERFLOW) + 100
    assert budgets == [5000 - len(LONG_PROMPT) - markers] * 2 + [5000 - len(PROMPT) - markers]


@pytest.mark.parametrize(
    "command, expected",
    [  # gen_kwargs of s1's eval/commands.sh
        ("max_gen_toks=32768,max_tokens_thinking=auto,thinking_n_ignore=2,thinking_n_ignore_str=Hmm",
         {"thinking_n_ignore": 2, "thinking_n_ignore_str": "Hmm", "thinking_min_tokens": 1}),
        ("max_gen_toks=32768,max_tokens_thinking=auto,thinking_n_ignore=2",
         {"thinking_n_ignore": 2, "thinking_n_ignore_str": "", "thinking_min_tokens": 1}),
        ("max_gen_toks=32768,max_tokens_thinking=16000",
         {"max_tokens_thinking": 16000, "thinking_n_ignore": 0, "thinking_min_tokens": 0}),
        ("max_gen_toks=32768,max_tokens_thinking=auto,thinking_start=<|im_start|>,thinking_end=<|im_start|>answer,"
         "until_thinking=<|im_start|>0",
         {"thinking_start": "<|im_start|>", "until_thinking": ("<|im_start|>0",),
          "thinking_end_overflow": "<|im_start|>answer\nFinal Answer:"}),
        # s1 derives its overflow marker from thinking_end
        ("max_gen_toks=32768,max_tokens_thinking=auto,thinking_start=<|im_start|>,"
         "thinking_end=<|im_start|>answer\nFinal Answer:,until_thinking=<|im_start|>0",
         {"thinking_end_overflow": "<|im_start|>answer\nFinal Answer:\nFinal Answer:"}),
        # until_thinking_2 (vllm_causallms.py) adds a second thinking stop
        ("max_tokens_thinking=auto,until_thinking_2=</s>", {"until_thinking": ("<|im_start|>", "</s>")}),
    ],
)
def test_s1_documented_gen_kwargs_are_accepted(command, expected):
    settings = parse_gen_kwargs({**simple_parse_args_string(command), **S1}, SAMPLING_KEYS)
    assert {key: getattr(settings.forcing, key) for key in expected} == expected


@pytest.mark.parametrize(
    "command, reason",
    [
        ("max_gen_toks=32768,max_tokens_thinking=3500,rejection_sample=true,temperature=1",
         "gen_kwarg rejection_sample: the s1 fork's rejection sampling .* is not supported"),
        ("max_tokens_thinking=auto,temperature_thinking=0.7",
         r"gen_kwarg temperature_thinking: per-phase sampling .* pass temperature instead"),
        ("max_tokens_thinking=auto,min_tokens_thinking=5", "gen_kwarg min_tokens_thinking: the controller sets"),
        ("max_tokens_thinking=auto,min_tokens=5", "unknown gen_kwarg 'min_tokens'"),
    ],
)
def test_s1_keys_m1_eval_does_not_take_are_rejected_with_the_reason(command, reason):
    with pytest.raises(GenKwargsError, match=reason) as error:
        parse_gen_kwargs({**simple_parse_args_string(command), **S1}, SAMPLING_KEYS)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("preset", "expected"), [("m1", "tt  Wait"), ("s1", "tt Wait")])
def test_m1_prepends_a_space_to_the_ignore_string_after_a_space(preset, expected):
    """m1's keep_think: a round whose text ends in " " (not "\\n") gets " Wait"; s1 appends the string as is."""
    def ends_with_a_space(prompt: str) -> str:
        return ("x" if "Wait" in prompt else "tt ") + "<|im_start|>answer\n"

    request, _ = forced(
        {"max_tokens_thinking": 100, "thinking_n_ignore": 1, "thinking_n_ignore_str": "Wait", "budget_preset": preset},
        ends_with_a_space,
    )
    assert thinking_of(request).startswith(expected)
    request, _ = forced({"max_tokens_thinking": 100, "thinking_n_ignore": 1}, thinker([5, 6]))
    assert "tttttWait" in thinking_of(request)  # no space without one before
