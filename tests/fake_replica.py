"""A fake data-parallel replica for tests/test_data_parallel.py: real worker processes and pipes, no vLLM.

Kept apart from the test module because every spawned worker imports the factory's module: this one imports only
the controller's small modules, so a worker starts in about a second.
"""

from __future__ import annotations

import os
import time
from collections import deque

from m1_models.data_parallel import ReplicaEngine
from m1_models.engine_types import GenerationStep, Phase, StepResult

#: a first prompt id that makes the fake raise in submit / exit the process in poll
CRASH, DIE = -1, -2


class FakeEngine:
    """Finishes its oldest step every ``delay`` seconds (one at a time: a slow or fast replica); refuses more
    than ``cap`` requests held (from a request's first step until its last, an answer, returns: as vLLM's sessions
    hold a slot between steps), as a check of the parent's dispatch. A result's text is the worker's pid."""

    max_open_requests = 0  # a request holds nothing here between its steps (see engine_types.StepEngine)

    def colocate(self, key: int, with_key: int) -> None:
        """One place to run: nothing to choose (see engine_types.StepEngine)."""

    def __init__(self, delay: float, cap: int) -> None:
        self.delay, self.cap = delay, cap
        self.pending: deque[tuple[int, GenerationStep]] = deque()
        self.held: set[int] = set()

    def submit(self, key: int, step: GenerationStep) -> None:
        if step.prompt_ids[0] == CRASH:
            raise ValueError("the fake replica was told to fail")
        if key not in self.held and len(self.held) >= self.cap:
            raise AssertionError(f"more than cap={self.cap} requests held")
        self.held.add(key)
        self.pending.append((key, step))

    def poll(self) -> list[tuple[int, StepResult]]:
        time.sleep(self.delay)
        key, step = self.pending.popleft()
        if step.prompt_ids[0] == DIE:
            os._exit(3)
        if step.phase in (Phase.ANSWER, Phase.PLAIN):
            self.held.discard(key)
        return [(key, StepResult(token_ids=(7,), text=str(os.getpid()), finish_reason="length"))]

    def abort(self) -> None:
        self.pending.clear()
        self.held.clear()

    def close(self) -> None:
        self.abort()


def fake_replica(delay: float, cap: int) -> ReplicaEngine:
    return ReplicaEngine(FakeEngine(delay, cap), cap)
