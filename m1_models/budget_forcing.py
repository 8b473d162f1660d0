"""The engine-independent budget-forcing controller: one state machine per request (the contract, in this
project's words: ``docs/budget-forcing.md``).

Each request is a small state machine (:class:`ForcedRequest`) in the style of vLLM's per-request states: it
says what to generate next (:meth:`ForcedRequest.next_step`), is told what came back (:meth:`ForcedRequest.feed`)
and moves through the phases THINKING -> ANSWER -> DONE.  It never talks to an engine itself; the schedulers in
:mod:`m1_models.scheduling` move steps between requests and an engine.  What a request asks for (gen_kwargs,
presets) is parsed in :mod:`m1_models.settings`.

Token accounting uses the engine's own token ids: every continuation is the prompt ids + the ids generated so
far + the ids of the appended strings, and thinking tokens (appended "Wait" strings included) never exceed the
request's budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from m1_base.errors import GenKwargsError
from m1_models.engine_types import BackendTokenizer, GenerationStep, Phase, StepResult
from m1_models.settings import ForcingConfig, GenerationSettings


@dataclass
class GenerationRecord:
    """What one request did (its fields go into the per-sample record, :data:`m1_models.records.RECORD_SCHEMA`)."""

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
    cached_tokens: int = 0
    decoded_tokens: int = 0
    reused_tokens: int = 0
    servers: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        """The fields by their names (``dataclasses.asdict`` without its deep copy: a sweep makes thousands)."""
        out = dict(self.__dict__)
        out["finish_reasons"] = list(self.finish_reasons)
        out["servers"] = list(self.servers)
        return out


def resolve_budget(
    forcing: ForcingConfig,
    prompt_len: int,
    tokenizer: BackendTokenizer,
    max_model_len: int,
    *,
    max_gen_toks: int | None = None,
    longest_prompt: int | None = None,
) -> int:
    """The exact thinking budget of one request, checked against the context window.

    ``max_gen_toks`` (lm-eval's) and ``longest_prompt`` (the longest prompt generated together with this one;
    this prompt when not given) are what the s1 preset's ``auto`` is computed from.
    """
    rules = forcing.rules
    start = len(tokenizer.encode(forcing.thinking_start))
    markers = start + max(
        len(tokenizer.encode("\n" + marker)) for marker in (forcing.thinking_end, forcing.thinking_end_overflow)
    )
    answer_reserve = 1 if rules.answer_takes_rest_of_window else forcing.max_tokens_answer
    reserve_text = "1 answer token" if rules.answer_takes_rest_of_window else f"max_tokens_answer={answer_reserve}"
    room = max_model_len - prompt_len - markers - answer_reserve
    if forcing.max_tokens_thinking == "auto" and rules.auto_from_max_gen_toks:
        # s1 fork, vllm_causallms.py _model_generate: max_tokens - max(len(prompt) over the batch)
        # - len(thinking_start ids) - len(thinking_end + "\nFinal Answer:" ids) - 100
        if max_gen_toks is None:
            raise ValueError(f"budget_preset={forcing.budget_preset} computes auto from max_gen_toks: pass it")
        longest = max(prompt_len, longest_prompt or 0)
        auto_markers = start + len(tokenizer.encode(forcing.thinking_end_overflow))
        budget = max_gen_toks - longest - auto_markers - rules.auto_margin
        formula = (
            f"max_gen_toks={max_gen_toks} - longest prompt ({longest} tokens) - markers ({auto_markers}) "
            f"- {rules.auto_margin} = {budget}"
        )
        if budget < 1:
            raise GenKwargsError(
                f"max_tokens_thinking=auto (budget_preset={forcing.budget_preset}) leaves no thinking room: "
                f"{formula}; raise max_gen_toks (the s1 commands pass max_gen_toks=32768)"
            )
        if budget > room:
            raise GenKwargsError(
                f"max_tokens_thinking=auto (budget_preset={forcing.budget_preset}: {formula}) does not fit the "
                f"context window: prompt ({prompt_len} tokens) + markers + {budget} + {reserve_text} exceed "
                f"max_model_len={max_model_len}; lower max_gen_toks to at most max_model_len or raise max_model_len"
            )
        return budget
    if forcing.max_tokens_thinking == "auto":
        if room < 1:
            raise GenKwargsError(
                f"max_tokens_thinking=auto leaves no thinking room: the prompt ({prompt_len} tokens) + markers "
                f"+ {reserve_text} fill the context window of {max_model_len}; "
                f"lower max_tokens_answer or raise max_model_len"
            )
        return room
    assert isinstance(forcing.max_tokens_thinking, int)
    if forcing.max_tokens_thinking > room:
        raise GenKwargsError(
            f"max_tokens_thinking={forcing.max_tokens_thinking} does not fit the context window: "
            f"prompt ({prompt_len} tokens) + markers + {reserve_text} leave "
            f"{max(room, 0)} of max_model_len={max_model_len}; lower max_tokens_thinking (or use auto) or "
            f"raise max_model_len"
        )
    return forcing.max_tokens_thinking


def step_seed(seed: int, position: int) -> int:
    """The seed of a forced request's step that starts after ``position`` ids (prompt and thinking so far).

    Every step of a seeded request gets its own random stream, a function of the request's seed and of where the
    step starts only: a step's tokens then do not depend on how the engine ran the steps before it (one session,
    one request per step, an HTTP call), and two settings of a sweep that reach the same point draw the same
    tokens, so the smaller can take its step from the larger (:mod:`m1_models.step_sharing`), exactly as its own
    run would have drawn them."""
    digest = hashlib.sha256(f"{seed}:{position}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def kept_ids(result: StepResult, tokenizer: BackendTokenizer) -> tuple[tuple[int, ...], str]:
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
    """State machine for one request; see the module docstring and ``docs/budget-forcing.md``."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        settings: GenerationSettings,
        tokenizer: BackendTokenizer,
        max_model_len: int,
        longest_prompt: int | None = None,
    ) -> None:
        """``longest_prompt``: the longest prompt of the requests generated together (the s1 preset's ``auto``
        budget is computed from it, as the s1 fork does per batch); this request's prompt when not given."""
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
            self.budget = resolve_budget(
                self.forcing,
                len(prompt_ids),
                tokenizer,
                max_model_len,
                max_gen_toks=settings.max_gen_toks,
                longest_prompt=longest_prompt,
            )
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

    def _step_sampling(self) -> dict[str, Any]:
        """The request's sampling parameters, a seed turned into this step's own (:func:`step_seed`)."""
        sampling = self.settings.sampling
        seed = sampling.get("seed")
        if seed is None:
            return sampling
        return {**sampling, "seed": step_seed(int(seed), len(self.ids))}

    def next_step(self) -> GenerationStep | None:
        if self.phase is Phase.PLAIN:  # one step: its seed is the request's, as lm-eval's vllm model passes it
            sampling = self.settings.sampling
            return GenerationStep(tuple(self.ids), self._plain_max, self.settings.until, Phase.PLAIN, sampling)
        sampling = self._step_sampling()
        rules = self.forcing.rules
        if self.phase is Phase.THINKING:
            stop = self.forcing.until_thinking + (self.settings.until if rules.thinking_stops_at_until else ())
            max_tokens = self.budget - self.used
            min_tokens = min(self.forcing.thinking_min_tokens, max_tokens)
            return GenerationStep(
                tuple(self.ids),
                max_tokens,
                stop,
                Phase.THINKING,
                sampling,
                min_tokens=min_tokens,
                stop_token_ids=self._single_token_ids(stop) if min_tokens else (),
            )
        if self.phase is Phase.ANSWER:
            # the answer gets what the window leaves when that is less than its cap (s1: vLLM stops there)
            max_tokens = min(self.forcing.max_tokens_answer, self._max_model_len - len(self.ids))
            stop = self.settings.until if rules.answer_stops_at_until else self.forcing.until_thinking
            return GenerationStep(tuple(self.ids), max_tokens, stop, Phase.ANSWER, sampling)
        return None

    def _single_token_ids(self, stops: Sequence[str]) -> tuple[int, ...]:
        """The ids of the stop strings that are one token: an engine holds these back during min_tokens (as the
        s1 fork passes its stops as stop_token_ids with min_tokens); longer stop strings stay strings only."""
        ids: list[int] = []
        for stop in stops:
            encoded = self.tokenizer.encode(stop)
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(encoded[0])
        return tuple(ids)

    def feed(self, result: StepResult) -> None:
        self.record.finish_reasons.append(result.finish_reason)
        self.record.cached_tokens += result.cached_tokens
        if result.served_by:
            self.record.servers.append(result.served_by)
        if result.shared:
            self.record.reused_tokens += len(result.token_ids)
        else:
            self.record.decoded_tokens += len(result.token_ids)
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
            wait = self.forcing.thinking_n_ignore_str
            if self.forcing.rules.space_before_ignore_str:
                so_far = self.tokenizer.decode(self._thinking_ids)
                if so_far.endswith(" ") and not so_far.endswith("\n"):
                    wait = " " + wait
            wait_ids = self.tokenizer.encode(wait)
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
        newline = self._overflow or self.forcing.rules.newline_before_end  # s1: only when the budget ran out
        appended = ("\n" if newline and not thinking_text.endswith("\n") else "") + marker
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
