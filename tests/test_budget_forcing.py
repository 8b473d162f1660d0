"""The budget-forcing controller against a scripted engine: every branch of SPEC-budget-forcing.md."""

from __future__ import annotations

import pytest

from m1_models.budget_forcing import (
    ForcedRequest,
    GenKwargsError,
    Phase,
    StepResult,
    kept_ids,
    parse_gen_kwargs,
)
from m1_models.scheduling import run
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
    assert all(step.sampling == {"temperature": 0.7, "seed": 3} for _, _, step in engine.submitted)
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


@pytest.mark.parametrize("off", [None, "none", ""])
def test_budget_can_be_switched_off_explicitly(off):
    settings = parse_gen_kwargs({"max_tokens_thinking": off, "max_gen_toks": 9}, SAMPLING_KEYS)
    assert settings.forcing.forced is False and settings.max_gen_toks == 9
