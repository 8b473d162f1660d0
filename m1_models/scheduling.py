"""Moving generation steps between :class:`~m1_models.budget_forcing.ForcedRequest` states and an engine.

Two schedules, interchangeable so they can be measured against each other:

* ``continuous`` (default): a request whose step finished gets its next step (next ignore round, or the answer)
  submitted at once, while the rest of the batch is still generating;
* ``rounds``: every round is one batch and waits for its slowest request, as the m1 and s1 reference
  implementations do.  An engine that keeps a request's state between its steps (``max_open_requests``: m1-vllm's
  sessions hold a scheduler slot from a request's first step to its last) is given the requests in waves of at
  most that many, each wave's rounds run to the end before the next wave starts; otherwise requests held between
  rounds would take every slot and the rest of the round could never run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

from m1_models.budget_forcing import ForcedRequest
from m1_models.engine_types import StepEngine, StepResult

logger = logging.getLogger(__name__)

Schedule = Literal["continuous", "rounds"]
SCHEDULES: tuple[str, ...] = ("continuous", "rounds")


def run(
    requests: Sequence[ForcedRequest],
    engine: StepEngine,
    schedule: Schedule = "continuous",
    on_done: Callable[[int], None] | None = None,
) -> None:
    """Drive every request to DONE. ``on_done(index)`` is called as each request finishes.

    When anything fails (the engine, ``on_done``, Ctrl-C), the steps still in flight are aborted before the error
    goes on, so the engine can serve the next call."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {SCHEDULES}")
    try:
        if schedule == "continuous":
            _run_continuous(requests, engine, on_done)
        else:
            _run_rounds(requests, engine, on_done)
    except BaseException:
        try:
            engine.abort()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            logger.debug("aborting the engine's steps failed", exc_info=True)
        raise


def _start(requests: Sequence[ForcedRequest], indices: Sequence[int], engine: StepEngine) -> int:
    submitted = 0
    for index in indices:
        step = requests[index].next_step()
        if step is not None:
            engine.submit(index, step)
            submitted += 1
    return submitted


def _run_continuous(
    requests: Sequence[ForcedRequest], engine: StepEngine, on_done: Callable[[int], None] | None
) -> None:
    in_flight = _start(requests, range(len(requests)), engine)
    while in_flight:
        for index, result in engine.poll():
            request = requests[index]
            request.feed(result)
            step = request.next_step()
            if step is None:
                in_flight -= 1
                if on_done is not None:
                    on_done(index)
            else:
                engine.submit(index, step)


def _run_rounds(requests: Sequence[ForcedRequest], engine: StepEngine, on_done: Callable[[int], None] | None) -> None:
    wave = engine.max_open_requests or max(len(requests), 1)
    for first in range(0, len(requests), wave):
        _run_rounds_of(requests, range(first, min(first + wave, len(requests))), engine, on_done)


def _run_rounds_of(
    requests: Sequence[ForcedRequest],
    indices: Sequence[int],
    engine: StepEngine,
    on_done: Callable[[int], None] | None,
) -> None:
    active = [i for i in indices if not requests[i].done]
    round_number = 0
    while active:
        round_number += 1
        waiting = _start(requests, active, engine)
        finished: list[tuple[int, StepResult]] = []
        while len(finished) < waiting:
            finished += engine.poll()
        logger.debug("round %d: %d steps", round_number, waiting)
        for index, result in finished:
            requests[index].feed(result)
            if requests[index].done and on_done is not None:
                on_done(index)
        active = [i for i in active if not requests[i].done]
