"""Data parallelism for ``m1-vllm``: N model copies (replicas), each a worker process that owns its own engine.

Why processes of our own: vLLM's offline ``LLM(data_parallel_size>1)`` refuses single-process use (it wants one
process per rank, started by the caller), and one ``LLM`` per process is what vLLM supports.  Each replica process
is started once (``spawn``) and kept for the life of the model: every ``generate_until`` call, task and m1-sweep
setting reuses it, so every replica loads the weights once.

Why work stealing rather than an up-front split: budget-forced requests differ wildly in length (one stops after
a hundred thinking tokens, the next spends its whole budget and a "Wait" round), so a split fixed in advance
leaves one replica idle while another works through a long tail.  Here a request's first step waits in a
parent-side FIFO queue and goes to a replica only when that replica holds fewer than ``cap`` requests (its
``max_num_seqs``: what it batches at once, so more would only queue inside vLLM, where no other replica can take
it); a replica that finishes early pulls more of the queue.  A later step of a request (its next "Wait" round,
its answer) goes at once to the replica that ran the earlier ones, bypassing the queue: that replica holds the
request's KV.  A request holds its replica's slot from its first step until its last (an answer or a plain
generation) returns: between two steps vLLM keeps a session's slot too, and a schedule that holds requests
between rounds must not be given more than the slots.

Inside a worker the engine is whatever the replica factory returns (for vLLM the single-engine
:class:`~m1_models.vllm_engine.VLLMStepEngine`, so the vLLM calls live in one place); :func:`_worker_main` receives
submit / abort / close messages over a pipe, steps its engine while it has work (blocking on the pipe when idle)
and sends finished ``(ticket, StepResult)`` pairs back.  An exception in a worker, or a worker that dies, is raised
from the parent's :meth:`DataParallelStepEngine.poll` as a ``RuntimeError`` naming the replica: never a hang,
never an empty answer.

One module of ~480 lines on purpose: the parent's dispatch and the worker's loop are the two ends of one pipe
protocol (submit / abort / close / ready / done / error), and the replica planning beside them decides what each
worker is started with; split, every message would be defined in one file and read in another.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.util import Finalize
from typing import Any

from m1_base import values
from m1_base.errors import ModelArgsError
from m1_models.engine_types import GenerationStep, Phase, StepEngine, StepResult

logger = logging.getLogger(__name__)

#: seconds a replica may take to load (a 70B model from a slow disk takes minutes)
START_TIMEOUT = 3600.0
#: seconds a replica gets to shut its engine down after "close" before it is terminated
STOP_TIMEOUT = 60.0


def _nothing() -> None:
    return None


@dataclass
class ReplicaEngine:
    """What a replica factory returns inside the worker: the engine, how many steps it batches at once (the
    dispatch cap) and how to release it when the worker stops."""

    engine: StepEngine
    cap: int
    shutdown: Callable[[], None] = _nothing


@dataclass(frozen=True)
class ReplicaSpec:
    """How to start one replica: ``factory(*args)`` runs in the worker (module-level, so ``spawn`` can pickle it);
    ``env`` is set in the parent's environment while the worker starts (devices, core binding)."""

    factory: Callable[..., ReplicaEngine]
    args: tuple[Any, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class Replica:
    """The parent's handle of one worker process."""

    index: int
    process: Any  # a spawn-context multiprocessing.Process
    conn: Connection
    cap: int = 0
    in_flight: int = 0  # requests it holds: first step sent, last step not yet returned
    steps_run: int = 0  # steps it finished (tests and the log read it)

    @property
    def pid(self) -> int | None:
        return self.process.pid


class DataParallelStepEngine:
    """:class:`~m1_models.scheduling.StepEngine` over N worker processes, with work stealing (module docstring).

    The workers start in the constructor, concurrently, and it returns once every one is ready (or raises,
    stopping the others, when one fails).  Tickets (the ids the workers see) come from one counter for the life
    of the engine, so a result of a step aborted in one call can never be taken for a step of a later call.
    """

    def __init__(
        self, specs: Sequence[ReplicaSpec], *, start_timeout: float = START_TIMEOUT, stop_timeout: float = STOP_TIMEOUT
    ) -> None:
        if not specs:
            raise ValueError("a data-parallel engine needs at least one replica")
        context = multiprocessing.get_context("spawn")
        self.replicas: list[Replica] = []
        self._queue: deque[tuple[int, int, GenerationStep]] = deque()  # first steps waiting: (ticket, key, step)
        self._tickets: dict[int, tuple[int, Replica, bool]] = {}  # ticket in flight -> (key, replica, last step)
        self._sticky: dict[int, Replica] = {}  # an open request's key -> the replica that holds it
        self._ids = itertools.count()
        self._failure: str | None = None
        # run at garbage collection or interpreter exit, before multiprocessing joins its (non-daemon) children
        self._finalizer = Finalize(self, _stop_all, args=(self.replicas, stop_timeout), exitpriority=10)
        try:
            for index, spec in enumerate(specs):
                parent_end, child_end = context.Pipe()
                process = context.Process(
                    target=_worker_main,
                    args=(child_end, spec.factory, spec.args),
                    name=f"m1-replica-{index}",
                    daemon=False,  # vLLM starts processes of its own, which a daemonic process may not
                )
                with _environ(spec.env):  # spawn: the child's environment is the parent's at start()
                    process.start()
                child_end.close()
                self.replicas.append(Replica(index, process, parent_end))
            self._await_ready(start_timeout)
        except BaseException:
            self._finalizer()
            raise
        logger.info(
            "m1 data parallel: %d replicas ready (pids %s), at most %d requests each",
            len(self.replicas),
            ", ".join(str(r.pid) for r in self.replicas),
            self.cap,
        )

    # -- what tests and the log read ---------------------------------------------------------------------------
    @property
    def cap(self) -> int:
        """Requests a replica holds at most at a time (its engine's max_num_seqs)."""
        return min(replica.cap for replica in self.replicas)

    @property
    def max_open_requests(self) -> int:
        """Requests all replicas hold at once (see :attr:`VLLMStepEngine.max_open_requests`)."""
        return sum(replica.cap for replica in self.replicas)

    @property
    def steps_per_replica(self) -> list[int]:
        return [replica.steps_run for replica in self.replicas]

    @property
    def pids(self) -> list[int | None]:
        return [replica.pid for replica in self.replicas]

    # -- StepEngine ----------------------------------------------------------------------------------------------
    def colocate(self, key: int, with_key: int) -> None:
        """``key`` (not started yet) runs on ``with_key``'s replica, which holds the prefix it extends (a nested
        sweep's whole tree of settings on one replica), when that replica has a free slot; it holds the slot
        from its first step to its last.  Otherwise ``key`` waits in the queue like any request."""
        replica = self._sticky.get(with_key)
        if replica is not None and key not in self._sticky and replica.in_flight < replica.cap:
            self._sticky[key] = replica
            replica.in_flight += 1

    def submit(self, key: int, step: GenerationStep) -> None:
        self._raise_failure()
        ticket = next(self._ids)
        previous = self._sticky.get(key)
        if previous is not None:
            # a later step of an open request: its replica holds the request's KV (and, should the step not extend
            # it, is the one engine that must drop it)
            self._send_step(previous, ticket, key, step)
        else:
            self._queue.append((ticket, key, step))

    def poll(self) -> list[tuple[int, StepResult]]:
        self._raise_failure()
        # queued first steps go out here, after the scheduler submitted the continuations of the steps the last
        # poll returned (they go straight to their replicas): no replica holds more requests than its cap
        self._dispatch()
        if not self._tickets:
            if self._queue:  # nothing runs, yet no replica has room: requests left between steps hold every slot
                raise RuntimeError(
                    f"m1 data parallel: {len(self._queue)} requests wait while every replica's slots are held by "
                    f"requests between two steps (a schedule must continue or finish the requests it started)"
                )
            return []
        while True:
            # the timeout: a worker's forked engine processes may hold its pipe and sentinel open after it died,
            # so _receive also asks the OS (exitcode) each second
            wait([*(r.conn for r in self.replicas), *(r.process.sentinel for r in self.replicas)], timeout=1.0)
            done: list[tuple[int, StepResult]] = []
            for replica in self.replicas:
                for message in self._receive(replica):
                    if message[0] != "done":
                        continue
                    for ticket, result in message[1]:
                        entry = self._tickets.pop(ticket, None)
                        if entry is None:  # aborted: its slot was already given back
                            continue
                        key, owner, last = entry
                        if last:
                            self._release(key)
                        owner.steps_run += 1
                        done.append((key, result))
            if done:
                return done

    def abort(self) -> None:
        self._queue.clear()
        self._tickets.clear()
        self._sticky.clear()
        for replica in self.replicas:
            replica.in_flight = 0
            try:
                replica.conn.send(("abort",))
            except OSError:  # a dead worker: poll() reports it
                logger.debug("m1 data parallel: replica %d did not take the abort", replica.index, exc_info=True)

    def close(self) -> None:
        if not self._finalizer.still_active():
            return
        self.abort()
        logger.info("m1 data parallel: steps run per replica: %s", self.steps_per_replica)
        self._finalizer()

    # -- the parent's side ---------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Queued first steps to the replicas with room, least busy first (FIFO: the oldest request first)."""
        while self._queue:
            open_replicas = [r for r in self.replicas if r.in_flight < r.cap]
            if not open_replicas:
                return
            replica = min(open_replicas, key=lambda r: r.in_flight)
            ticket, key, step = self._queue.popleft()
            self._sticky[key] = replica
            replica.in_flight += 1
            self._send_step(replica, ticket, key, step)

    def _release(self, key: int) -> None:
        """Request ``key`` no longer holds a slot of its replica."""
        replica = self._sticky.pop(key, None)
        if replica is not None:
            replica.in_flight -= 1

    def _send_step(self, replica: Replica, ticket: int, key: int, step: GenerationStep) -> None:
        try:
            replica.conn.send(("submit", ticket, key, step))
        except OSError:
            self._check_exit(replica)
            self._fail(replica, "closed its pipe")
        self._tickets[ticket] = (key, replica, step.phase in (Phase.ANSWER, Phase.PLAIN))

    def _receive(self, replica: Replica) -> list[tuple[str, Any]]:
        """The replica's "done" messages waiting in the pipe; its error, or its death, raised."""
        messages = []
        try:
            while replica.conn.poll():
                message = replica.conn.recv()
                if message[0] == "error":
                    _, summary, remote_traceback = message
                    logger.error("m1 data parallel: replica %d failed:\n%s", replica.index, remote_traceback)
                    self._fail(replica, f"failed: {summary}")
                messages.append(message)
        except (EOFError, OSError):
            replica.process.join(timeout=5)
            self._check_exit(replica)
            self._fail(replica, "closed its pipe")
        if not messages:
            self._check_exit(replica)
        return messages

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.replicas)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = ", ".join(str(r.index) for r in waiting)
                raise RuntimeError(f"m1 data parallel: replica(s) {names} did not start within {timeout:.0f} s")
            wait([*(r.conn for r in waiting), *(r.process.sentinel for r in waiting)], timeout=min(remaining, 1.0))
            for replica in list(waiting):
                for message in self._receive(replica):
                    if message[0] == "ready":
                        replica.cap = max(1, int(message[1]))
                        waiting.remove(replica)

    def _check_exit(self, replica: Replica) -> None:
        code = replica.process.exitcode
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self._fail(replica, f"{how} (see its log above; a killed worker often means out of memory)")

    def _fail(self, replica: Replica, reason: str) -> None:
        self._failure = f"m1-vllm data parallel: replica {replica.index} (pid {replica.pid}) {reason}"
        raise RuntimeError(self._failure)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(self._failure)


def _stop_all(replicas: list[Replica], timeout: float) -> None:
    """Ask every worker to stop, wait for them together (reading what they still send), then terminate."""
    for replica in replicas:
        try:
            replica.conn.send(("close",))
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    for replica in replicas:
        open_conn = not replica.conn.closed
        while replica.process.exitcode is None and time.monotonic() < deadline:
            watched = [replica.process.sentinel, *([replica.conn] if open_conn else [])]
            if replica.conn in wait(watched, timeout=max(0.0, deadline - time.monotonic())):
                try:
                    replica.conn.recv()  # a late result: dropped (keeps the worker's sender from blocking)
                except (EOFError, OSError):
                    open_conn = False
    for replica in replicas:
        if replica.process.exitcode is None:
            logger.warning("m1 data parallel: replica %d did not stop in %.0f s; terminating", replica.index, timeout)
            replica.process.terminate()
            replica.process.join(timeout=10)
        if replica.process.exitcode is None:
            replica.process.kill()
            replica.process.join(timeout=10)
        replica.conn.close()


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, the previous values restored after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- the worker's side -------------------------------------------------------------------------------------------
def _worker_main(conn: Connection, factory: Callable[..., ReplicaEngine], args: tuple[Any, ...]) -> None:
    """A replica process: build the engine, say "ready" with its cap, serve until "close" or the parent is gone.

    Results go out through a sender thread, so the loop never blocks on a full pipe while the parent is itself
    blocked sending it steps."""
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_loop, args=(conn, outbox), name="m1-replica-sender", daemon=True)
    sender.start()
    started: ReplicaEngine | None = None
    failed = False
    try:
        started = factory(*args)
        outbox.put(("ready", started.cap))
        _serve(conn, started.engine, outbox)
    except BaseException as error:  # noqa: BLE001 - handed to the parent, which raises it from poll()
        failed = True
        summary = " ".join(f"{type(error).__name__}: {error}".split())[:600]
        outbox.put(("error", summary, traceback.format_exc()))
    finally:
        outbox.put(None)
        sender.join(timeout=STOP_TIMEOUT if failed else 5)
        if started is not None:
            try:
                started.engine.close()
                started.shutdown()
            except Exception:  # noqa: BLE001 - stopping anyway
                logging.getLogger(__name__).debug("replica shutdown failed", exc_info=True)
    if failed:
        sys.exit(1)


def _send_loop(conn: Connection, outbox: queue.SimpleQueue[Any]) -> None:
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except OSError:  # the parent is gone
            return


def _serve(conn: Connection, engine: StepEngine, outbox: queue.SimpleQueue[Any]) -> None:
    parent = multiprocessing.parent_process()
    idle_watch = [conn, *([parent.sentinel] if parent is not None else [])]
    in_flight: dict[int, int] = {}  # the parent's request key -> the ticket of its step in flight
    while True:
        if not in_flight and conn not in wait(idle_watch):
            return  # the parent died
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "submit":
                    _, ticket, key, step = message
                    engine.submit(key, step)  # by request: the engine may keep a request's state between its steps
                    in_flight[key] = ticket
                elif message[0] == "abort":
                    engine.abort()
                    in_flight.clear()
                elif message[0] == "close":
                    return
                else:
                    raise RuntimeError(f"unknown message {message[0]!r}")
        except EOFError:
            return  # the parent closed its end
        if in_flight:
            done = engine.poll()
            if done:
                outbox.put(("done", [(in_flight.pop(key), result) for key, result in done]))


# -- planning the replicas (before anything starts) ---------------------------------------------------------------
def parse_data_parallel_size(value: Any) -> int:
    """model_arg ``data_parallel_size`` as an int >= 1, or a one-line :class:`ModelArgsError`."""
    return values.whole(  # type: ignore[return-value]
        value,
        "data_parallel_size",
        values.MODEL_ARG,
        minimum=1,
        hint="the number of model copies, e.g. data_parallel_size=2; leave it out for one copy",
    )


def cpu_replica_envs(replicas: int, world: int, cores: Sequence[int]) -> list[dict[str, str]]:
    """Each replica's ``VLLM_CPU_OMP_THREADS_BIND``: its own share of ``cores`` (one ``|``-separated list per rank
    when a replica spans ``world`` > 1 tensor/pipeline ranks), so the replicas' threads never share a core."""
    if replicas * world > len(cores):
        needs = f"{replicas} x {world} ranks" if world > 1 else f"{replicas} replicas"
        raise ModelArgsError(
            f"model_arg data_parallel_size={replicas} needs one CPU core per rank ({needs}) but this process may "
            f"use {len(cores)} core(s); lower data_parallel_size to at most {max(1, len(cores) // world)}"
        )
    cores = sorted(cores)
    share = len(cores) // replicas
    per_rank = share // world
    envs = []
    for index in range(replicas):
        mine = cores[index * share : (index + 1) * share]
        ranks = [",".join(map(str, mine[rank * per_rank : (rank + 1) * per_rank])) for rank in range(world)]
        envs.append({"VLLM_CPU_OMP_THREADS_BIND": "|".join(ranks)})
    return envs


def gpu_replica_envs(replicas: int, world: int, devices: Sequence[str], env_var: str) -> list[dict[str, str]]:
    """Each replica's visible devices (``env_var``, e.g. CUDA_VISIBLE_DEVICES): its slice of ``world`` devices."""
    if replicas * world > len(devices):
        per = f" x tensor_parallel_size*pipeline_parallel_size={world}" if world > 1 else ""
        raise ModelArgsError(
            f"model_arg data_parallel_size={replicas}{per} needs {replicas * world} GPUs but {len(devices)} are "
            f"visible ({','.join(devices) or 'none'}); lower data_parallel_size to at most {len(devices) // world} "
            f"or make more GPUs visible ({env_var})"
        )
    return [{env_var: ",".join(devices[i * world : (i + 1) * world])} for i in range(replicas)]


__all__ = [
    "DataParallelStepEngine",
    "Replica",
    "ReplicaEngine",
    "ReplicaSpec",
    "cpu_replica_envs",
    "gpu_replica_envs",
    "parse_data_parallel_size",
]
