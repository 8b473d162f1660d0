"""Steps with the same prefix generated once: a nested sweep decodes each token of its token tree once.

A sweep's settings of one question (thinking budgets 32 ... 512, 0 ... 2 "Wait" rounds) are separate requests with
the same prompt.  Under greedy decoding (and seeded sampling, whose per-step streams depend only on the request's
seed and where the step starts: :func:`m1_models.budget_forcing.step_seed`), a step is a function of its prompt
ids, its sampling and its stops; its token limit only says where it is cut.  So a thinking step of budget 64 is
the first 64 tokens of the same step with budget 512 when that one ran past 64 tokens, and the very same result
when it stopped before.  :class:`StepSharing` sits between the schedule and an engine and runs each such family
of steps once:

* steps submitted together are grouped by what they generate from (phase, prompt ids, stops, sampling); the one
  with the largest token limit goes to the engine, the others wait for it;
* when its result comes back, each waiting step takes it (stopped before the waiting step's limit: the same
  result; ran past it: its first ``limit`` ids, ended by ``"length"``), marked ``shared``; where the result cannot
  say what the smaller step would have done (it ended exactly at, or in a stop string across, the smaller limit),
  the smaller step runs on its own;
* a step that continues the same prefix later (the next "Wait" round, the answer of settings that forked at the
  same point) is grouped again, so settings share their whole common prefix; where they fork, the forked step is
  new work for the engine (its prefix is in the engine's prefix cache or the larger request's session), and the
  engine is told where the prefix is (:meth:`~m1_models.engine_types.StepEngine.colocate`: data-parallel
  replicas keep a question's whole tree of settings on one replica, a fleet on one server).

The rules of :meth:`derive` are what vLLM does at a token limit (``check_stop``: a stop token or EOS sampled as
the last allowed token ends the request as "stop"; a stop string completed by it, too); the greedy identity of a
nested sweep with separate runs is pinned on the real engine by ``tests/test_nested_sweep.py``.

Written here because no engine offers it: vLLM's prefix cache shares prompt KV, not decoding, and ``n > 1``
samples diverge at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from array import array
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from m1_models.budget_forcing import kept_ids
from m1_models.engine_types import BackendTokenizer, GenerationStep, Phase, StepEngine, StepResult

logger = logging.getLogger(__name__)

#: finished results kept for steps that come later (a bounded cache: results hold the generated ids)
FINISHED_KEPT = 4096


def family(step: GenerationStep) -> bytes:
    """What a step generates from (everything but its token limit), as a digest."""
    digest = hashlib.sha256(array("q", step.prompt_ids).tobytes())
    extra = (step.phase.value, step.stop, sorted(step.sampling.items()), step.min_tokens, step.stop_token_ids)
    digest.update(repr(extra).encode())
    return digest.digest()


@dataclass
class _Source:
    """One engine call whose result other steps take."""

    key: int
    step: GenerationStep
    waiters: list[tuple[int, GenerationStep]] = field(default_factory=list)


class StepSharing:
    """A :class:`~m1_models.engine_types.StepEngine` over another one; see the module docstring."""

    def __init__(self, engine: StepEngine, tokenizer: BackendTokenizer) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self._pending: list[tuple[int, GenerationStep]] = []
        self._running: dict[bytes, _Source] = {}  # family -> the engine call other steps of it wait for
        self._sources: dict[int, tuple[bytes, _Source]] = {}  # engine key in flight -> its family and source
        self._finished: OrderedDict[bytes, tuple[GenerationStep, StepResult, int]] = OrderedDict()  # + its key
        self._ready: list[tuple[int, StepResult]] = []
        self._leader: dict[int, int] = {}  # a request that took results -> the request whose call it took them from
        self._called: set[int] = set()  # requests that made an engine call of their own
        #: engine calls made and steps answered without one (for benchmarks and logs)
        self.calls = 0
        self.taken = 0

    @property
    def max_open_requests(self) -> int:
        return self.engine.max_open_requests

    # -- StepEngine -------------------------------------------------------------------------------------------
    def submit(self, key: int, step: GenerationStep) -> None:
        self._pending.append((key, step))

    def poll(self) -> list[tuple[int, StepResult]]:
        self._flush()
        if not self._ready:
            for key, result in self.engine.poll():
                self._finish(key, result)
        ready, self._ready = self._ready, []
        return ready

    def colocate(self, key: int, with_key: int) -> None:
        self.engine.colocate(key, with_key)

    def abort(self) -> None:
        self._pending.clear()
        self._running.clear()
        self._sources.clear()
        self._ready.clear()
        self.engine.abort()

    def close(self) -> None:
        self.abort()
        self._finished.clear()
        self.engine.close()

    # -- sharing ----------------------------------------------------------------------------------------------
    def derive(self, source: GenerationStep, result: StepResult, step: GenerationStep) -> StepResult | None:
        """``step``'s result from the result of ``source`` (same family), or None when it cannot be known."""
        limit = step.max_tokens
        if limit == source.max_tokens:
            return dataclasses.replace(result, shared=True, cached_tokens=len(step.prompt_ids))
        if step.phase is Phase.PLAIN:  # its text is the engine's own: never cut here
            return None
        generated = len(result.token_ids)
        if result.finish_reason != "length" and generated <= limit:  # stopped before the limit: the same end
            return dataclasses.replace(result, shared=True, cached_tokens=len(step.prompt_ids))
        if limit < generated and limit <= self._kept(result):  # ran past the limit before any stop began
            ids = result.token_ids[:limit]
            return StepResult(ids, self.tokenizer.decode(ids), "length", len(step.prompt_ids), shared=True)
        return None

    def _kept(self, result: StepResult) -> int:
        """Ids before the stop (a stop string's tokens, the stop token or EOS are not): where a cut is safe."""
        return len(kept_ids(result, self.tokenizer)[0])

    def _flush(self) -> None:
        groups: dict[bytes, list[tuple[int, GenerationStep]]] = defaultdict(list)
        for key, step in self._pending:
            groups[family(step)].append((key, step))
        self._pending = []
        for name, members in groups.items():
            members.sort(key=lambda member: -member[1].max_tokens)
            for key, step in members:
                if self._take_finished(name, key, step):
                    continue
                running = self._running.get(name)
                if running is not None and step.max_tokens <= running.step.max_tokens:
                    running.waiters.append((key, step))
                    continue
                self._call(name, key, step)

    def _take_finished(self, name: bytes, key: int, step: GenerationStep) -> bool:
        finished = self._finished.get(name)
        if finished is None:
            return False
        derived = self.derive(finished[0], finished[1], step)
        if derived is None:
            return False
        self._finished.move_to_end(name)
        self._ready.append((key, derived))
        self._leader.setdefault(key, finished[2])
        self.taken += 1
        return True

    def _call(self, name: bytes, key: int, step: GenerationStep) -> None:
        source = _Source(key, step)
        if name not in self._running:
            self._running[name] = source
        self._sources[key] = (name, source)
        self.calls += 1
        if key not in self._called:  # its first call: where the request it took its prefix from runs
            self._called.add(key)
            leader = self._leader.get(key)
            if leader is not None:
                self.engine.colocate(key, leader)
        self.engine.submit(key, step)

    def _finish(self, key: int, result: StepResult) -> None:
        name, source = self._sources.pop(key)
        if self._running.get(name) is source:
            del self._running[name]
        self._ready.append((key, result))
        previous = self._finished.get(name)
        if previous is None or previous[0].max_tokens <= source.step.max_tokens:
            self._finished[name] = (source.step, result, source.key)
            self._finished.move_to_end(name)
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
        for waiter, step in source.waiters:
            derived = self.derive(source.step, result, step)
            if derived is None:  # the result does not say: the step runs on its own (grouped again at the next poll)
                self._pending.append((waiter, step))
            else:
                self._ready.append((waiter, derived))
                self._leader.setdefault(waiter, source.key)
                self.taken += 1


__all__ = ["FINISHED_KEPT", "StepSharing", "family"]
