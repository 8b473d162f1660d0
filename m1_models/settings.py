"""Budget-forcing settings: the gen_kwargs a request may carry, the ``m1`` and ``s1`` presets, and their parsing.

:func:`parse_gen_kwargs` turns one request's gen_kwargs into :class:`GenerationSettings` (the forcing
configuration, lm-eval's ``until``/``max_gen_toks`` and the engine's sampling parameters), rejecting anything it
cannot use by name, before any generation starts.  The state machine that runs these settings is
:mod:`m1_models.budget_forcing`; the behaviour of both presets is written down in ``docs/budget-forcing.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from m1_base import values
from m1_base.errors import GenKwargsError
from m1_base.markers import (
    ANSWER_MARKER,
    FINAL_ANSWER_SUFFIX,
    IM_START,
    OVERFLOW_MARKER,
    THINK_MARKER,
    THINK_START,
    THINKING_STOPS,
)

#: the keys of this module; every other gen_kwarg must be a sampling parameter of the backend
FORCING_KEYS = (
    "max_tokens_thinking",
    "thinking_n_ignore",
    "thinking_n_ignore_str",
    "thinking_start",
    "thinking_end",
    "thinking_end_overflow",
    "until_thinking",
    "until_thinking_2",  # the s1 fork's second thinking stop string, appended to until_thinking
    "max_tokens_answer",
    "budget_preset",
)
#: lm-eval's own generation keys, understood by every backend
LM_EVAL_KEYS = ("until", "max_gen_toks", "do_sample")

#: keys of the s1 fork (eval/lm-evaluation-harness/lm_eval/models/vllm_causallms.py) that m1-eval does not take,
#: with the reason; any other ``<name>_thinking`` key is one of the fork's per-phase sampling overrides
S1_UNSUPPORTED_KEYS: dict[str, str] = {
    "rejection_sample": (
        "the s1 fork's rejection sampling (re-draw the whole thinking until it ends within max_tokens_thinking) "
        "is not supported; drop it, budget forcing ends the thinking at the budget instead"
    ),
    "min_tokens_thinking": (
        "the controller sets the thinking phase's min_tokens itself (budget_preset=s1: 1 when thinking_n_ignore "
        "is given, as the s1 fork does); drop it"
    ),
}

#: s1's overflow marker is its thinking_end plus this (vllm_causallms.py: ``thinking_end + "\nFinal Answer:"``)
S1_OVERFLOW_SUFFIX = FINAL_ANSWER_SUFFIX


@dataclass(frozen=True)
class PresetRules:
    """How a preset's reference implementation behaves, beyond its default strings.

    The s1 values follow the s1 fork's ``_model_generate`` (eval/lm-evaluation-harness/lm_eval/models/
    vllm_causallms.py in github.com/simplescaling/s1, commit 77272c6).
    """

    #: "\n" before ``thinking_end`` when the thinking stopped by itself (``thinking_end_overflow`` gets one
    #: whenever the thinking does not already end in "\n"); s1 adds it only on overflow
    newline_before_end: bool = True
    #: the thinking phase also stops at the task's ``until`` (s1 extends until_thinking with lm-eval's stop list)
    thinking_stops_at_until: bool = False
    #: the answer phase stops at the task's ``until`` (and EOS) rather than at ``until_thinking``
    answer_stops_at_until: bool = False
    #: min_tokens of every thinking step when ``thinking_n_ignore`` is given (s1: 1, so a round cannot end at
    #: once); single-token stop strings then also go to the engine as stop token ids, which vLLM holds back
    #: during min_tokens (a stop string completed within them would otherwise go unnoticed)
    ignore_min_tokens: int = 0
    #: ``auto`` = max_gen_toks - longest prompt of the batch - len(thinking_start) - len(thinking_end_overflow)
    #: - ``auto_margin`` (s1) instead of the context window left after the prompt, markers and max_tokens_answer
    auto_from_max_gen_toks: bool = False
    auto_margin: int = 0
    #: the answer gets min(max_tokens_answer, what the context window leaves) and a budget only has to leave
    #: one answer token (s1 asks vLLM for max_gen_toks, which stops at the window); otherwise the budget must
    #: leave room for all of max_tokens_answer
    answer_takes_rest_of_window: bool = False
    #: a thinking round that ended in " " (not "\n") gets " " + ``thinking_n_ignore_str`` (m1's keep_think in
    #: src/eval/inference_keep_think.py prepends the space in exactly that case); s1 appends the string as is
    space_before_ignore_str: bool = True


PRESET_RULES: dict[str, PresetRules] = {
    "m1": PresetRules(),
    "s1": PresetRules(
        newline_before_end=False,
        thinking_stops_at_until=True,
        answer_stops_at_until=True,
        ignore_min_tokens=1,
        auto_from_max_gen_toks=True,
        auto_margin=100,  # s1: "Leave 100 tokens for answer"
        answer_takes_rest_of_window=True,
        space_before_ignore_str=False,
    ),
}

PRESETS: dict[str, dict[str, Any]] = {
    # the m1 repository's evaluation (SGLang script) defaults
    "m1": {
        "thinking_n_ignore": 0,
        "thinking_n_ignore_str": "Wait",
        "thinking_start": THINK_START,
        "thinking_end": ANSWER_MARKER,
        "thinking_end_overflow": OVERFLOW_MARKER,
        "until_thinking": THINKING_STOPS,
        "max_tokens_answer": 1024,
    },
    # the s1 lm-eval fork's defaults; the answer is capped by max_gen_toks
    "s1": {
        "thinking_n_ignore": 0,
        "thinking_n_ignore_str": "",  # s1 appends nothing unless thinking_n_ignore_str is given
        "thinking_start": THINK_MARKER,
        "thinking_end": ANSWER_MARKER,
        "thinking_end_overflow": None,  # thinking_end + S1_OVERFLOW_SUFFIX
        "until_thinking": (IM_START,),
        "max_tokens_answer": None,
    },
}

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default for generate_until


@dataclass(frozen=True)
class ForcingConfig:
    """Budget-forcing settings of one request (already validated)."""

    max_tokens_thinking: int | Literal["auto"] | None
    thinking_n_ignore: int
    thinking_n_ignore_str: str
    thinking_start: str
    thinking_end: str
    thinking_end_overflow: str
    until_thinking: tuple[str, ...]
    max_tokens_answer: int
    budget_preset: str
    rules: PresetRules = field(default_factory=PresetRules)
    thinking_min_tokens: int = 0  # min_tokens of each thinking step (the preset's, when thinking_n_ignore is given)

    @property
    def forced(self) -> bool:
        return self.max_tokens_thinking is not None


@dataclass(frozen=True)
class GenerationSettings:
    """What a request asks of the generator: forcing, lm-eval's stop/limit, and engine sampling params."""

    forcing: ForcingConfig
    until: tuple[str, ...]
    max_gen_toks: int
    sampling: dict[str, Any]


GEN_KWARG = values.GEN_KWARG  # gen_kwargs' values go through the strict parsers of m1_base.values

#: sampling gen_kwargs every backend understands, parsed here (the backend's own check covers the rest)
_SAMPLING_PARSERS: dict[str, Any] = {
    "temperature": lambda v: values.number(v, "temperature", GEN_KWARG, minimum=0.0),
    "top_p": lambda v: values.probability(v, "top_p", GEN_KWARG),
    "min_p": lambda v: values.probability(v, "min_p", GEN_KWARG, zero=True),
    "top_k": lambda v: values.whole(v, "top_k", GEN_KWARG, minimum=-1, hint="-1 or 0 means no limit"),
    "seed": lambda v: values.whole(v, "seed", GEN_KWARG, minimum=0, maximum=2**63 - 1),
}


def parse_gen_kwargs(gen_kwargs: dict[str, Any], sampling_keys: frozenset[str] | set[str]) -> GenerationSettings:
    """Split and validate one request's gen_kwargs.

    ``sampling_keys`` are the backend's sampling parameter names (vLLM: the fields of ``SamplingParams``).
    Anything else is rejected by name, before any generation starts.
    """
    kwargs = dict(gen_kwargs)
    unknown = sorted(k for k in kwargs if k not in FORCING_KEYS and k not in LM_EVAL_KEYS and k not in sampling_keys)
    for key in unknown:
        if key in S1_UNSUPPORTED_KEYS:
            raise GenKwargsError(f"gen_kwarg {key}: {S1_UNSUPPORTED_KEYS[key]}")
        if key.endswith("_thinking"):
            raise GenKwargsError(
                f"gen_kwarg {key}: per-phase sampling (the s1 fork's <parameter>_thinking keys) is not supported; "
                f"pass {key.removesuffix('_thinking')} instead, it applies to the thinking and the answer"
            )
    if unknown:
        raise GenKwargsError(
            f"unknown gen_kwarg {unknown[0]!r}; use one of the budget-forcing keys "
            f"({', '.join(FORCING_KEYS)}), lm-eval's ({', '.join(LM_EVAL_KEYS)}) or a sampling parameter of "
            f"the engine (e.g. temperature, top_p, top_k, seed)"
        )
    preset_name = values.choice(kwargs.pop("budget_preset", "m1"), "budget_preset", GEN_KWARG, PRESETS)
    preset = PRESETS[preset_name]
    rules = PRESET_RULES[preset_name]

    until = values.texts(kwargs.pop("until", None), "until", GEN_KWARG)
    max_gen_toks = values.token_count(kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS), "max_gen_toks", GEN_KWARG)
    do_sample = kwargs.pop("do_sample", None)
    if do_sample is not None:
        do_sample = values.boolean(do_sample, "do_sample", GEN_KWARG)

    budget: int | Literal["auto"] | None = None
    if "max_tokens_thinking" in kwargs:
        raw_budget = kwargs.pop("max_tokens_thinking")
        word = raw_budget.strip().lower() if isinstance(raw_budget, str) else raw_budget
        if word == "auto":
            budget = "auto"
        elif word == "":  # an unset shell variable ($B): never silently a run without forcing
            raise GEN_KWARG.fail(
                "max_tokens_thinking",
                raw_budget,
                "is empty; give a number of thinking tokens (e.g. max_tokens_thinking=4096), auto, or none for a "
                "run without forcing",
            )
        elif word in (None, "none"):  # documented: an explicit run without forcing
            budget = None
        else:
            budget = values.token_count(
                raw_budget, "max_tokens_thinking", GEN_KWARG, hint="a number of thinking tokens, or auto"
            )

    def given(key: str) -> bool:
        return key in kwargs

    def setting(key: str) -> Any:
        return kwargs.pop(key, preset[key])

    n_ignore = values.whole(setting("thinking_n_ignore"), "thinking_n_ignore", GEN_KWARG, minimum=0)
    max_tokens_answer = (
        values.token_count(kwargs.pop("max_tokens_answer"), "max_tokens_answer", GEN_KWARG)
        if given("max_tokens_answer")
        else (max_gen_toks if preset["max_tokens_answer"] is None else preset["max_tokens_answer"])
    )

    def marker(key: str, *, empty: bool = False) -> str:
        return values.text(setting(key), key, GEN_KWARG, empty=empty)  # type: ignore[return-value]

    thinking_end = marker("thinking_end")
    overflow = (
        marker("thinking_end_overflow")
        if given("thinking_end_overflow") or preset["thinking_end_overflow"] is not None
        else thinking_end + S1_OVERFLOW_SUFFIX
    )
    until_thinking = values.texts(setting("until_thinking"), "until_thinking", GEN_KWARG, optional=False)
    until_thinking_2 = values.texts(kwargs.pop("until_thinking_2", None), "until_thinking_2", GEN_KWARG)
    forcing = ForcingConfig(
        max_tokens_thinking=budget,
        thinking_n_ignore=n_ignore,
        thinking_n_ignore_str=marker("thinking_n_ignore_str", empty=True),
        thinking_start=marker("thinking_start"),
        thinking_end=thinking_end,
        thinking_end_overflow=overflow,
        until_thinking=until_thinking + until_thinking_2,
        max_tokens_answer=max_tokens_answer,
        budget_preset=preset_name,
        rules=rules,
        # s1 sets min_tokens whenever thinking_n_ignore is passed, even =0 (``thinking_n_ignore is not None``)
        thinking_min_tokens=rules.ignore_min_tokens if "thinking_n_ignore" in gen_kwargs else 0,
    )
    if not forcing.forced:
        ignored = [k for k in FORCING_KEYS if k in gen_kwargs and k not in ("budget_preset", "max_tokens_thinking")]
        if ignored:
            raise GenKwargsError(
                f"gen_kwarg {ignored[0]} has no effect without max_tokens_thinking; "
                f"add max_tokens_thinking=<budget> (or auto) to use budget forcing"
            )
    sampling = dict(kwargs)
    for key, parse in _SAMPLING_PARSERS.items():
        if key in sampling:
            parsed = parse(sampling[key])  # checked; a value lm-eval already converted is kept as it came
            if isinstance(sampling[key], str):
                sampling[key] = parsed
    if do_sample is False and "temperature" not in sampling:
        sampling["temperature"] = 0.0
    return GenerationSettings(forcing=forcing, until=until, max_gen_toks=max_gen_toks, sampling=sampling)
