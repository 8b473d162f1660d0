"""m1-vllm's data parallelism (``data_parallel_size``): replicas in worker processes fed by work stealing.

The dispatch is tested with fake replicas (real processes and pipes, no vLLM, tests/fake_replica.py); the real
thing with two CPU replicas of the tiny model against one float32 engine (greedy parity, every phase of a request
on one replica, the same workers across calls, nothing left after close).  GPUs are not tested here.
"""

from __future__ import annotations

import os

import psutil
import pytest
from lm_eval.api.instance import Instance

from m1_base.errors import ModelArgsError
from m1_models.data_parallel import (
    DataParallelStepEngine,
    ReplicaSpec,
    cpu_replica_envs,
    gpu_replica_envs,
    parse_data_parallel_size,
)
from m1_models.engine_types import GenerationStep, Phase
from m1_models.records import RecordSink
from tests.fake_replica import CRASH, DIE, fake_replica
from tests.helpers import PARITY_GEN_KWARGS as GEN_KWARGS
from tests.helpers import parity_instances, parity_records

FLOAT32 = {"max_model_len": 2048, "dtype": "float32"}


def instances(lm, n_per_kwargs: int = 3, task: str = "dp_test") -> list[Instance]:
    return parity_instances(lm, task, n_per_kwargs)


def records_of(lm, task: str = "dp_test") -> dict[int, dict]:
    return parity_records(lm, task)  # not cached_tokens: which prompts share a replica's cache depends on the dispatch


def step(prompt: tuple[int, ...], last: bool = False) -> GenerationStep:
    """A request's step; its ``last`` (the answer) gives its replica's slot back when it returns."""
    return GenerationStep(prompt_ids=prompt, max_tokens=1, stop=(), phase=Phase.ANSWER if last else Phase.THINKING)


# -- the dispatch, with fake replicas (no vLLM) ----------------------------------------------------------------
def test_work_stealing_a_slow_replica_takes_fewer_requests_and_none_gets_more_than_cap():
    """20 requests of 3 phases each, cap 2, one replica 10x slower than the other: the queue feeds whichever
    replica has room (the fake refuses a step beyond its cap), and every phase of a request stays on one replica."""
    engine = DataParallelStepEngine([ReplicaSpec(fake_replica, (0.15, 2)), ReplicaSpec(fake_replica, (0.015, 2))])
    try:
        assert engine.cap == 2 and len(set(engine.pids)) == 2
        prompts = {key: (key + 1,) for key in range(20)}
        phases_left = dict.fromkeys(prompts, 3)
        ran_on: dict[int, set[str]] = {key: set() for key in prompts}
        for key, prompt in prompts.items():
            engine.submit(key, step(prompt))
        while any(phases_left.values()):
            for key, result in engine.poll():
                assert all(replica.in_flight <= engine.cap for replica in engine.replicas)
                ran_on[key].add(result.text)  # the worker's pid
                phases_left[key] -= 1
                if phases_left[key]:  # the continuation extends the request's prompt: same replica, no queue
                    prompts[key] += result.token_ids
                    engine.submit(key, step(prompts[key], last=phases_left[key] == 1))
        slow, fast = engine.steps_per_replica
        assert slow + fast == 60 and fast > 3 * slow > 0, engine.steps_per_replica
        assert all(len(pids) == 1 for pids in ran_on.values())
        requests_on = {pid: sum(pids == {pid} for pids in ran_on.values()) for pid in map(str, engine.pids)}
        assert requests_on[str(engine.pids[1])] > requests_on[str(engine.pids[0])]
    finally:
        engine.close()
    assert not any(psutil.pid_exists(pid) for pid in engine.pids if pid is not None)


def test_a_colocated_request_runs_on_the_replica_of_the_request_it_extends():
    """A nested sweep's forked setting (m1_models/step_sharing.py) runs where the setting it forked from runs,
    when that replica has a free slot; otherwise it waits in the queue like any request."""
    engine = DataParallelStepEngine([ReplicaSpec(fake_replica, (0.01, 2))] * 2)
    try:
        for key in (0, 1):  # one request on each replica
            engine.submit(key, step((key + 1,)))
        first = dict(engine.poll() + engine.poll())
        while len(first) < 2:
            first.update(engine.poll())
        for fork, leader in ((10, 0), (11, 0), (12, 1)):
            engine.colocate(fork, leader)
            engine.submit(fork, step((leader + 1, 5), last=True))
        queued = [key for _, key, _ in engine._queue]
        assert queued == [11]  # replica 0 was full (cap 2: requests 0 and 10): 11 waits for any free slot
        ran: dict[int, str] = {}
        while len(ran) < 3:
            ran.update((key, result.text) for key, result in engine.poll())
        assert ran[10] == first[0].text and ran[12] == first[1].text  # where their prefix is
    finally:
        engine.close()


def test_requests_left_between_steps_cannot_starve_the_queue_silently():
    """A request holds its replica's slot until its last step returns; a schedule that leaves requests between
    steps while others wait gets an error naming it, never an endless empty poll."""
    engine = DataParallelStepEngine([ReplicaSpec(fake_replica, (0.01, 1))] * 2)
    try:
        for key in range(3):
            engine.submit(key, step((key + 1,)))
        done = []
        while len(done) < 2:
            done += engine.poll()
        with pytest.raises(RuntimeError, match="1 requests wait while every replica's slots are held"):
            engine.poll()
        key = done[0][0]
        engine.submit(key, step((key + 1, 7), last=True))  # its last step goes to its replica; its return frees it
        finished = []
        while len(finished) < 2:
            finished += engine.poll()
        assert {k for k, _ in finished} == {key, 2}
    finally:
        engine.close()


@pytest.mark.parametrize(
    "prompt, message",
    [((CRASH,), r"replica \d \(pid \d+\) failed: ValueError: the fake replica was told to fail"),
     ((DIE,), r"replica \d \(pid \d+\) exited with code 3")],
)  # fmt: skip
def test_a_failing_or_dying_replica_is_raised_from_poll_naming_it(prompt, message):
    engine = DataParallelStepEngine([ReplicaSpec(fake_replica, (0.01, 4))] * 2)
    try:
        engine.submit(0, step((5,)))
        engine.submit(1, step(prompt))
        with pytest.raises(RuntimeError, match=message):
            while True:
                engine.poll()
        engine.abort()  # what scheduling.run does next: must not hang on the dead worker
        with pytest.raises(RuntimeError, match=message):  # and the engine stays failed, never an empty answer
            engine.poll()
    finally:
        engine.close()
    assert not any(psutil.pid_exists(pid) for pid in engine.pids if pid is not None)


def test_replica_plans_devices_and_cores():
    eight = [str(i) for i in range(8)]
    assert gpu_replica_envs(8, 1, eight, "CUDA_VISIBLE_DEVICES")[7] == {"CUDA_VISIBLE_DEVICES": "7"}
    assert gpu_replica_envs(2, 4, list("01234567"), "CUDA_VISIBLE_DEVICES") == [
        {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
        {"CUDA_VISIBLE_DEVICES": "4,5,6,7"},
    ]
    assert gpu_replica_envs(2, 1, ["4", "6"], "CUDA_VISIBLE_DEVICES")[1] == {"CUDA_VISIBLE_DEVICES": "6"}
    with pytest.raises(ModelArgsError, match="needs 12 GPUs but 8 are visible.*at most 2"):
        gpu_replica_envs(3, 4, list("01234567"), "CUDA_VISIBLE_DEVICES")
    assert cpu_replica_envs(2, 1, [0, 1]) == [{"VLLM_CPU_OMP_THREADS_BIND": "0"}, {"VLLM_CPU_OMP_THREADS_BIND": "1"}]
    assert cpu_replica_envs(2, 2, range(9)) == [
        {"VLLM_CPU_OMP_THREADS_BIND": "0,1|2,3"},
        {"VLLM_CPU_OMP_THREADS_BIND": "4,5|6,7"},
    ]
    with pytest.raises(ModelArgsError, match="at most 2"):
        cpu_replica_envs(3, 1, [0, 1])
    assert parse_data_parallel_size(4) == parse_data_parallel_size("4") == 4
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ModelArgsError, match="data_parallel_size"):
            parse_data_parallel_size(bad)


# -- model_args errors on the real m1-vllm: before any engine starts ---------------------------------------------
@pytest.mark.engine
@pytest.mark.parametrize("size, fix", [(0, "whole number >= 1"), (99, f"at most {len(os.sched_getaffinity(0))}")])
def test_bad_data_parallel_size_fails_before_any_engine_starts(tiny_model, size, fix):
    from m1_models.vllm_model import M1VLLM

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with pytest.raises(ModelArgsError, match=f"data_parallel_size={size}.*{fix}") as error:
        M1VLLM(pretrained=str(tiny_model), data_parallel_size=size, **FLOAT32)
    assert "\n" not in str(error.value)
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= before
    one = M1VLLM(pretrained=str(tiny_model), data_parallel_size=1, **FLOAT32)  # one copy: exactly as before
    assert one.data_parallel_size == 1 and one._replica_specs == [] and one._engine is None and one._llm is None


# -- two real CPU replicas against one engine --------------------------------------------------------------------
# the engine: the session's ``float32_reference`` (tests/conftest.py), one float32 m1-vllm engine's texts and records
# for the same requests, gpu_memory_utilization=0.1


@pytest.mark.engine
def test_two_cpu_replicas_give_the_single_engine_results(tiny_model, float32_reference):
    from m1_models.vllm_model import M1VLLM

    # gpu_memory_utilization is the total on CPU (one RAM): 0.1 per replica, as the reference engine has
    lm = M1VLLM(pretrained=str(tiny_model), gpu_memory_utilization=0.2, data_parallel_size=2, **FLOAT32)
    lm.record_sink = RecordSink()
    with pytest.raises(RuntimeError, match="data_parallel_size=2 has no in-process vllm.LLM.*step_engine"):
        _ = lm.llm
    assert lm._engine is None  # nothing started yet: the replicas start at the first generation
    try:
        engine = lm.step_engine()
        assert isinstance(engine, DataParallelStepEngine) and engine.cap >= 1
        pids = engine.pids
        workers = [psutil.Process(pid) for pid in pids]
        engine_processes = workers + [child for worker in workers for child in worker.children(recursive=True)]
        routes: dict[int, set[int]] = {}
        send = engine._send_step

        def recording_send(replica, ticket, key, step):
            routes.setdefault(key, set()).add(replica.index)
            send(replica, ticket, key, step)

        engine._send_step = recording_send
        texts = lm.generate_until(instances(lm), disable_tqdm=True)
        ref_texts, ref_records = float32_reference
        assert texts == ref_texts
        records = records_of(lm)
        assert records == ref_records
        assert any(r["ignore_rounds"] for r in records.values()) and any(r["budget_hit"] for r in records.values())
        assert all(count > 0 for count in engine.steps_per_replica), engine.steps_per_replica
        assert all(len(replicas) == 1 for replicas in routes.values())  # every phase of a request on one replica
        assert sum(engine.steps_per_replica) > len(texts)  # continuations ran (and stayed put)
        # a second call (another task, another m1-sweep setting) reuses the same workers and engines
        again = lm.generate_until(instances(lm, n_per_kwargs=1, task="dp_again"), disable_tqdm=True)
        assert again == [ref_texts[3 * k] for k in range(len(GEN_KWARGS))]
        assert lm.step_engine() is engine and engine.pids == pids and all(w.is_running() for w in workers)
    finally:
        lm.close()
    _, alive = psutil.wait_procs(engine_processes, timeout=30)
    assert not alive, [process.pid for process in alive]
