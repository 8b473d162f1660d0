"""The types that cross the engine boundary, in one small module (as vLLM keeps its engine-core request and
output types in ``vllm/v1/engine/__init__.py``): what the budget-forcing controller asks of an engine
(:class:`GenerationStep`), what comes back (:class:`StepResult`), the engine's interface (:class:`StepEngine`)
and the tokenizer both count with (:class:`BackendTokenizer`).

The controller (:mod:`m1_models.budget_forcing`), the schedules (:mod:`m1_models.scheduling`) and every engine
(:mod:`m1_models.vllm_engine`, :mod:`m1_models.server_model`, :mod:`m1_models.hf_model`,
:mod:`m1_models.data_parallel`) import these from here, so an engine never imports the controller.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["BackendTokenizer", "GenerationStep", "Phase", "StepEngine", "StepResult"]


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
    min_tokens: int = 0  # generate at least this many tokens before EOS / a stop may end the step (0: no minimum)
    stop_token_ids: tuple[int, ...] = ()  # the single-token stop strings as ids, held back during min_tokens


@dataclass(frozen=True)
class StepResult:
    """What the engine generated for a step.

    ``token_ids`` are all generated ids (an engine may include the tokens of a matched stop string);
    ``text`` is the generated text with the stop string and what follows removed; ``finish_reason`` is
    ``"length"`` (the step's token limit) or why it ended before (``"stop"``: stop string or EOS; an engine may
    report its own reasons, e.g. vLLM's ``"repetition"``); anything but ``"length"`` is an early end.
    ``cached_tokens`` is how many of the step's prompt tokens the engine did not prefill again: served from its
    prefix cache, or kept from the request's earlier steps (m1-vllm's sessions); 0 when the engine does not say.
    ``shared``: the result was not generated for this step but taken from another request's engine call with the
    same prompt ids and sampling (:mod:`m1_models.step_sharing`: a nested sweep's larger setting).
    ``served_by``: which server answered (m1-server: its address, credentials masked); "" for an in-process engine.
    """

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    cached_tokens: int = 0
    shared: bool = False
    served_by: str = ""


@runtime_checkable
class BackendTokenizer(Protocol):
    """The tokenizer the controller counts with (it must be the one the engine generates with)."""

    @property
    def name(self) -> str:
        """A name for lm-eval's cache keys of chat-formatted runs (``tokenizer_name``)."""
        ...

    @property
    def bos_token_id(self) -> int | None: ...

    @property
    def chat_template(self) -> str | None:
        """The chat template (None: the tokenizer has none; ``--apply_chat_template`` is then an error)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``, special tokens written in the text kept as such, no BOS added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens kept, no clean-up of spaces."""
        ...

    def has_token(self, token: str) -> bool:
        """Whether ``token`` (e.g. ``<|im_start|>``) is one token of the vocabulary."""
        ...

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """The chat template applied to ``messages`` as text (``add_generation_prompt=False``: continue the last
        message, as a task's gen_prefix prefills the assistant turn)."""
        ...


class StepEngine(Protocol):
    """What a backend offers the schedulers.

    One engine serves every ``generate_until`` call of a model, so the ids it gives its requests internally must
    stay unique for its whole life (``key`` is only unique within one :func:`run`).
    """

    def submit(self, key: int, step: GenerationStep) -> None:
        """Queue ``step`` for request ``key`` (at most one step per key is in flight)."""

    def poll(self) -> list[tuple[int, StepResult]]:
        """Advance the engine; return the steps that finished (may be empty while work is in flight).

        A failure the engine cannot recover from is raised here (e.g. every server of a fleet is down)."""

    def abort(self) -> None:
        """Drop every step in flight (their results are never returned); the engine stays usable."""

    def close(self) -> None:
        """Abort what is in flight and release the engine's resources (processes, connections, threads)."""

    def colocate(self, key: int, with_key: int) -> None:
        """A hint, given before ``key``'s first step: run ``key`` where ``with_key``'s steps run, whose prefix its
        steps extend (a nested sweep's setting that forks from a larger one: :mod:`m1_models.step_sharing`), so
        that the prefix is in that replica's or server's cache.  An engine with one place to run ignores it."""

    @property
    def max_open_requests(self) -> int:
        """How many requests the engine holds at once between their steps (m1-vllm's sessions keep a scheduler
        slot from a request's first step to its last); 0: a request holds nothing between its steps."""
