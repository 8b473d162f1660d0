"""A scripted stand-in for an engine, for controller tests: one character = one token.

The "model" is a function from the text so far to the text it would write next.  The engine applies the
step's token limit and stop strings the way vLLM does: the returned text stops before the stop string, while the
returned token ids run through the end of the stop string.  ``EOS`` in the script ends a generation.  Each
``poll`` advances every in-flight request by ``tokens_per_poll`` tokens, so long generations take more polls
than short ones and the two schedules can be told apart.  A step's ``min_tokens`` is checked as vLLM checks
it (at most ``max_tokens``) and recorded with the step, not simulated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from m1_models.engine_types import GenerationStep, StepResult

EOS = "\x00"


class CharTokenizer:
    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)


@dataclass
class _InFlight:
    key: int
    result: StepResult
    cost: int
    done_at: int


@dataclass
class ScriptedEngine:

    max_open_requests = 0  # a request holds nothing here between its steps (see engine_types.StepEngine)
    model: Callable[[str], str]
    tokens_per_poll: int = 1
    clock: int = 0
    submitted: list[tuple[int, int, GenerationStep]] = field(default_factory=list)  # (clock, key, step)
    in_flight: list[_InFlight] = field(default_factory=list)
    colocated: list[tuple[int, int]] = field(default_factory=list)  # the hints: (key, with_key)

    def colocate(self, key: int, with_key: int) -> None:
        self.colocated.append((key, with_key))

    def submit(self, key: int, step: GenerationStep) -> None:
        assert all(f.key != key for f in self.in_flight), "two steps in flight for one request"
        # vLLM's SamplingParams rejects these; the script does not model min_tokens beyond that (steps record it)
        assert step.max_tokens >= 1, f"max_tokens={step.max_tokens}"
        assert 0 <= step.min_tokens <= step.max_tokens, f"min_tokens={step.min_tokens} > max_tokens={step.max_tokens}"
        self.submitted.append((self.clock, key, step))
        prompt = CharTokenizer().decode(step.prompt_ids)
        result = self.generate(self.model(prompt), step)
        cost = max(1, len(result.token_ids))
        self.in_flight.append(_InFlight(key, result, cost, self.clock + -(-cost // self.tokens_per_poll)))

    @staticmethod
    def generate(continuation: str, step: GenerationStep) -> StepResult:
        eos = continuation.find(EOS)
        written = continuation if eos < 0 else continuation[:eos]
        cut = len(written)
        stop_end = None
        for stop in step.stop:
            at = written.find(stop)
            if 0 <= at < cut:
                cut, stop_end = at, at + len(stop)
        if cut >= step.max_tokens:
            text = written[: step.max_tokens]
            return StepResult(tuple(map(ord, text)), text, "length")
        if stop_end is not None:
            if stop_end > step.max_tokens:  # the stop string itself ran past the limit
                text = written[: step.max_tokens]
                return StepResult(tuple(map(ord, text)), text[:cut], "length" if cut == len(text) else "stop")
            return StepResult(tuple(map(ord, written[:stop_end])), written[:cut], "stop")
        if eos >= 0:
            return StepResult(tuple(map(ord, written)), written, "stop")
        text = continuation[: step.max_tokens]
        return StepResult(tuple(map(ord, text)), text, "length")

    def poll(self) -> list[tuple[int, StepResult]]:
        if not self.in_flight:
            raise AssertionError("poll() with nothing in flight")
        self.clock += 1
        done = [f for f in self.in_flight if f.done_at <= self.clock]
        self.in_flight = [f for f in self.in_flight if f.done_at > self.clock]
        return [(f.key, f.result) for f in done]

    def abort(self) -> None:
        self.in_flight = []

    def close(self) -> None:
        self.abort()
