"""The engine-independent budget-forcing controller (contract: SPEC-budget-forcing.md).

Each request is a small state machine (:class:`ForcedRequest`) in the style of vLLM's per-request states: it
says what to generate next (:meth:`ForcedRequest.next_step`), is told what came back (:meth:`ForcedRequest.feed`)
and moves through the phases THINKING -> ANSWER -> DONE.  It never talks to an engine itself; the schedulers in
:mod:`m1_models.scheduling` move steps between requests and an engine.

Token accounting uses the engine's own token ids: every continuation is the prompt ids + the ids generated so
far + the ids of the appended strings, and thinking tokens (appended "Wait" strings included) never exceed the
request's budget.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from m1_models.errors import M1UserError

logger = logging.getLogger(__name__)


class GenKwargsError(M1UserError):
    """A gen_kwarg the user gave cannot be used; the message names the key and the fix."""


class TokenizerLike(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


#: the keys of this module; every other gen_kwarg must be a sampling parameter of the backend
FORCING_KEYS = (
    "max_tokens_thinking",
    "thinking_n_ignore",
    "thinking_n_ignore_str",
    "thinking_start",
    "thinking_end",
    "thinking_end_overflow",
    "until_thinking",
    "max_tokens_answer",
    "budget_preset",
)
#: lm-eval's own generation keys, understood by every backend
LM_EVAL_KEYS = ("until", "max_gen_toks", "do_sample")

PRESETS: dict[str, dict[str, Any]] = {
    # the m1 repository's evaluation (SGLang script) defaults
    "m1": {
        "thinking_n_ignore": 0,
        "thinking_n_ignore_str": "Wait",
        "thinking_start": "<|im_start|>think\n",
        "thinking_end": "<|im_start|>answer",
        "thinking_end_overflow": "<|im_start|>answer\nFinal Answer:",
        "until_thinking": ("<|im_start|>", "<|im_end|>"),
        "max_tokens_answer": 1024,
    },
    # the s1 lm-eval fork's defaults; the answer is capped by max_gen_toks
    "s1": {
        "thinking_n_ignore": 0,
        "thinking_n_ignore_str": "Wait",
        "thinking_start": "<|im_start|>think",
        "thinking_end": "<|im_start|>answer",
        "thinking_end_overflow": "<|im_start|>answer\nFinal Answer:",
        "until_thinking": ("<|im_start|>",),
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


def _as_int(key: str, value: Any, *, minimum: int, fix: str) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError):
        raise GenKwargsError(f"gen_kwarg {key}={value!r} is not an integer; {fix}") from None
    if number < minimum:
        raise GenKwargsError(f"gen_kwarg {key}={number} must be >= {minimum}; {fix}")
    return number


def _as_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def parse_gen_kwargs(gen_kwargs: dict[str, Any], sampling_keys: frozenset[str] | set[str]) -> GenerationSettings:
    """Split and validate one request's gen_kwargs.

    ``sampling_keys`` are the backend's sampling parameter names (vLLM: the fields of ``SamplingParams``).
    Anything else is rejected by name, before any generation starts.
    """
    kwargs = dict(gen_kwargs)
    unknown = sorted(k for k in kwargs if k not in FORCING_KEYS and k not in LM_EVAL_KEYS and k not in sampling_keys)
    if unknown:
        raise GenKwargsError(
            f"unknown gen_kwarg {unknown[0]!r}; use one of the budget-forcing keys "
            f"({', '.join(FORCING_KEYS)}), lm-eval's ({', '.join(LM_EVAL_KEYS)}) or a sampling parameter of "
            f"the engine (e.g. temperature, top_p, top_k, seed)"
        )
    preset_name = str(kwargs.pop("budget_preset", "m1"))
    if preset_name not in PRESETS:
        raise GenKwargsError(f"gen_kwarg budget_preset={preset_name!r} is unknown; use one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]

    until = _as_strings(kwargs.pop("until", None))
    max_gen_toks = _as_int(
        "max_gen_toks", kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS), minimum=1, fix="pass max_gen_toks>=1"
    )
    do_sample = kwargs.pop("do_sample", None)

    budget: int | Literal["auto"] | None
    raw_budget = kwargs.pop("max_tokens_thinking", None)
    if raw_budget is None or (isinstance(raw_budget, str) and raw_budget.strip().lower() in ("", "none")):
        budget = None
    elif isinstance(raw_budget, str) and raw_budget.strip().lower() == "auto":
        budget = "auto"
    else:
        budget = _as_int(
            "max_tokens_thinking",
            raw_budget,
            minimum=1,
            fix="pass a thinking budget of at least 1 token, or max_tokens_thinking=auto",
        )

    def setting(key: str) -> Any:
        return kwargs.pop(key, preset[key])

    n_ignore = _as_int(
        "thinking_n_ignore", setting("thinking_n_ignore"), minimum=0, fix="pass thinking_n_ignore=0 or more"
    )
    answer_cap = setting("max_tokens_answer")
    max_tokens_answer = (
        max_gen_toks
        if answer_cap is None
        else _as_int("max_tokens_answer", answer_cap, minimum=1, fix="pass max_tokens_answer>=1")
    )
    forcing = ForcingConfig(
        max_tokens_thinking=budget,
        thinking_n_ignore=n_ignore,
        thinking_n_ignore_str=str(setting("thinking_n_ignore_str")),
        thinking_start=str(setting("thinking_start")),
        thinking_end=str(setting("thinking_end")),
        thinking_end_overflow=str(setting("thinking_end_overflow")),
        until_thinking=_as_strings(setting("until_thinking")),
        max_tokens_answer=max_tokens_answer,
        budget_preset=preset_name,
    )
    if not forcing.forced:
        ignored = [k for k in FORCING_KEYS if k in gen_kwargs and k not in ("budget_preset", "max_tokens_thinking")]
        if ignored:
            raise GenKwargsError(
                f"gen_kwarg {ignored[0]} has no effect without max_tokens_thinking; "
                f"add max_tokens_thinking=<budget> (or auto) to use budget forcing"
            )
    sampling = dict(kwargs)
    if do_sample is not None and not _truthy(do_sample) and "temperature" not in sampling:
        sampling["temperature"] = 0.0
    return GenerationSettings(forcing=forcing, until=until, max_gen_toks=max_gen_toks, sampling=sampling)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


class Phase(enum.Enum):
    THINKING = "thinking"
    ANSWER = "answer"
    PLAIN = "plain"  # no forcing: one generation, like lm-eval's vllm model
    DONE = "done"


@dataclass(frozen=True)
class GenerationStep:
    """One engine call a request needs: continue ``prompt_ids`` for at most ``max_tokens``."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...]
    phase: Phase
    sampling: dict[str, Any] = field(default_factory=dict)  # engine sampling parameters (temperature, seed...)


@dataclass(frozen=True)
class StepResult:
    """What the engine generated for a step.

    ``token_ids`` are all generated ids (an engine may include the tokens of a matched stop string);
    ``text`` is the generated text with the stop string and what follows removed; ``finish_reason`` is
    ``"length"`` (the step's token limit) or why it ended before (``"stop"``: stop string or EOS; an engine may
    report its own reasons, e.g. vLLM's ``"repetition"``); anything but ``"length"`` is an early end.
    """

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str


@dataclass
class GenerationRecord:
    """The per-sample record the spec asks for (one per request)."""

    forced: bool
    budget: int | None
    thinking_tokens: int = 0
    answer_tokens: int = 0
    ignore_rounds: int = 0
    budget_hit: bool = False
    finish_reasons: list[str] = field(default_factory=list)
    thinking_text: str = ""
    answer_text: str = ""
    prompt_tokens: int = 0


def resolve_budget(forcing: ForcingConfig, prompt_len: int, tokenizer: TokenizerLike, max_model_len: int) -> int:
    """The exact thinking budget of one request, checked against the context window."""
    markers = len(tokenizer.encode(forcing.thinking_start)) + max(
        len(tokenizer.encode("\n" + marker)) for marker in (forcing.thinking_end, forcing.thinking_end_overflow)
    )
    room = max_model_len - prompt_len - markers - forcing.max_tokens_answer
    if forcing.max_tokens_thinking == "auto":
        if room < 1:
            raise GenKwargsError(
                f"max_tokens_thinking=auto leaves no thinking room: the prompt ({prompt_len} tokens) + markers "
                f"+ max_tokens_answer={forcing.max_tokens_answer} fill the context window of {max_model_len}; "
                f"lower max_tokens_answer or raise max_model_len"
            )
        return room
    assert isinstance(forcing.max_tokens_thinking, int)
    if forcing.max_tokens_thinking > room:
        raise GenKwargsError(
            f"max_tokens_thinking={forcing.max_tokens_thinking} does not fit the context window: "
            f"prompt ({prompt_len} tokens) + markers + max_tokens_answer={forcing.max_tokens_answer} leave "
            f"{max(room, 0)} of max_model_len={max_model_len}; lower max_tokens_thinking (or use auto) or "
            f"raise max_model_len"
        )
    return forcing.max_tokens_thinking


def kept_ids(result: StepResult, tokenizer: TokenizerLike) -> tuple[tuple[int, ...], str]:
    """The generated ids without a matched stop string, and the text they decode to.

    Engines report the text cut before the stop string but may keep the stop string's tokens; continuing from
    those would show the model text that was never returned.  The longest prefix of ids whose decoding is a
    prefix of the kept text is what the model keeps (when a stop string began mid-token, that token is dropped
    too, and the returned text is what the ids decode to, so the log equals what the next phase sees).
    """
    ids = result.token_ids
    if result.finish_reason == "length" or not ids:
        return ids, result.text if result.finish_reason == "length" else tokenizer.decode(ids)
    for end in range(len(ids), -1, -1):
        text = tokenizer.decode(ids[:end])
        if result.text.startswith(text):
            return ids[:end], text
    return (), ""  # unreachable: the empty prefix always matches


class ForcedRequest:
    """State machine for one request; see the module docstring and the spec's algorithm."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        settings: GenerationSettings,
        tokenizer: TokenizerLike,
        max_model_len: int,
    ) -> None:
        self.settings = settings
        self.forcing = settings.forcing
        self.tokenizer = tokenizer
        self.prompt_ids = tuple(prompt_ids)
        self.ids: list[int] = list(prompt_ids)
        self.record = GenerationRecord(forced=self.forcing.forced, budget=None, prompt_tokens=len(prompt_ids))
        self._thinking_ids: list[int] = []
        self._answer_ids: list[int] = []
        self._plain_text = ""
        self._overflow = False
        self._max_model_len = max_model_len
        if self.forcing.forced:
            self.budget = resolve_budget(self.forcing, len(prompt_ids), tokenizer, max_model_len)
            self.record.budget = self.budget
            self.ids += tokenizer.encode(self.forcing.thinking_start)
            self.phase = Phase.THINKING
        else:
            self.budget = 0
            room = max_model_len - len(prompt_ids)
            if room < 1:
                raise GenKwargsError(
                    f"the prompt ({len(prompt_ids)} tokens) fills the context window of {max_model_len}; "
                    f"raise max_model_len or shorten the prompt"
                )
            self._plain_max = min(settings.max_gen_toks, room)
            self.phase = Phase.PLAIN

    @property
    def used(self) -> int:
        return len(self._thinking_ids)

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def next_step(self) -> GenerationStep | None:
        sampling = self.settings.sampling
        if self.phase is Phase.PLAIN:
            return GenerationStep(tuple(self.ids), self._plain_max, self.settings.until, Phase.PLAIN, sampling)
        if self.phase is Phase.THINKING:
            return GenerationStep(
                tuple(self.ids), self.budget - self.used, self.forcing.until_thinking, Phase.THINKING, sampling
            )
        if self.phase is Phase.ANSWER:
            return GenerationStep(
                tuple(self.ids), self.forcing.max_tokens_answer, self.forcing.until_thinking, Phase.ANSWER, sampling
            )
        return None

    def feed(self, result: StepResult) -> None:
        self.record.finish_reasons.append(result.finish_reason)
        ids, text = kept_ids(result, self.tokenizer)
        if self.phase is Phase.PLAIN:
            self._answer_ids += ids
            self._plain_text = result.text
            self.record.answer_tokens = len(ids)
            self.record.answer_text = result.text
            self.phase = Phase.DONE
        elif self.phase is Phase.THINKING:
            self._feed_thinking(ids, result.finish_reason)
        elif self.phase is Phase.ANSWER:
            self._answer_ids += ids
            self.ids += ids
            self.record.answer_tokens = len(self._answer_ids)
            self.record.answer_text = self.tokenizer.decode(self._answer_ids)
            self.phase = Phase.DONE
        else:
            raise RuntimeError("feed() called on a finished request")

    def _feed_thinking(self, ids: Sequence[int], finish_reason: str) -> None:
        self._thinking_ids += ids
        self.ids += ids
        stopped_early = finish_reason != "length"
        if stopped_early and self.record.ignore_rounds < self.forcing.thinking_n_ignore and self.used < self.budget:
            wait_ids = self.tokenizer.encode(self.forcing.thinking_n_ignore_str)
            if self.used + len(wait_ids) < self.budget:
                self._thinking_ids += wait_ids
                self.ids += wait_ids
                self.record.ignore_rounds += 1
                return  # next step: think on
        self._overflow = not stopped_early or self.used >= self.budget
        self._start_answer()

    def _start_answer(self) -> None:
        thinking_text = self.tokenizer.decode(self._thinking_ids)
        marker = self.forcing.thinking_end_overflow if self._overflow else self.forcing.thinking_end
        appended = ("" if thinking_text.endswith("\n") else "\n") + marker
        self.ids += self.tokenizer.encode(appended)
        self.record.thinking_tokens = self.used
        self.record.budget_hit = self._overflow
        self.record.thinking_text = thinking_text
        self.phase = Phase.ANSWER

    def output_text(self) -> str:
        """The text returned to lm-eval: thinking_start + thinking + marker + answer (or the plain generation)."""
        if not self.done:
            raise RuntimeError("output_text() before the request finished")
        if not self.forcing.forced:
            return self._plain_text
        return self.tokenizer.decode(self.ids[len(self.prompt_ids) :])
