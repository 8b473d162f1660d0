"""m1-server's fleet under the faults servers really have, on real vLLM OpenAI servers (tiny model, 127.0.0.1):
stopped with SIGTERM (the HTTP layer drains and holds its connections while the engine is gone), frozen with
SIGSTOP (for good, or for 20 s), restarted on the same port, and servers that answer HTTP 200 with truncated JSON
or 429 with ``Retry-After``.

Each run is 48 budget-forced requests (greedy, and seeded sampling, which gives the same tokens on any server) on
a fleet of two; it must end with the texts and records of a run on one healthy server, in about the healthy time
plus the stall limit (asserted generously: the machine's two cores run both servers), every request answered
once.  The killed-and-restarted single server and the server that never comes back are in
``tests/test_server_model.py``.
"""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time

import httpx
import pytest
from lm_eval.api.instance import Instance

from m1_models.records import RecordSink
from tests.helpers import PARITY_GEN_KWARGS, QUESTIONS, second_server_key_args

pytestmark = pytest.mark.engine

STALL = 3.0  # the runs' stall_timeout (seconds); the default is STALL_FLOOR (60 s) or more
COMPARED = ("forced", "budget", "prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit",
            "finish_reasons", "thinking_text", "answer_text")  # fmt: skip (not cached_tokens: each server's cache)


def requests(lm) -> list[Instance]:
    """48 forced requests: every kind of PARITY_GEN_KWARGS on 12 prompts."""
    out = []
    for k, gen_kwargs in enumerate(PARITY_GEN_KWARGS):
        for i in range(12):
            question = QUESTIONS[i % len(QUESTIONS)] + " " * (i // len(QUESTIONS)) + "\n" * k
            context = lm.apply_chat_template([{"role": "user", "content": question}])
            arguments = (context, dict(gen_kwargs))
            out.append(Instance("generate_until", {}, arguments, idx=0, metadata=("faults", len(out), 1)))
    return out


def fleet_lm(tiny_model, urls: list[str], **kwargs):
    """m1-server on ``urls``, with the key the session's second server demands when it is one of them."""
    from m1_models.server_model import M1Server

    args = {"max_concurrency": 4, "stall_timeout": STALL, "max_retries": 3, **second_server_key_args(), **kwargs}
    lm = M1Server(base_url="|".join(urls), tokenizer=str(tiny_model), **args)
    lm.record_sink = RecordSink()
    return lm


def records(lm) -> dict[int, dict]:
    found = lm.record_sink.pop("faults")
    assert len(found) == len({r["doc_id"] for r in found}) == 48  # every request answered once
    return {r["doc_id"]: {k: r[k] for k in COMPARED} for r in found}


@pytest.fixture(scope="module")
def healthy(tiny_model, vllm_server):
    """The texts, records and time of the 48 requests on the session's one healthy server."""
    lm = fleet_lm(tiny_model, [vllm_server.url])
    start = time.monotonic()
    texts = lm.generate_until(requests(lm), disable_tqdm=True)
    elapsed = time.monotonic() - start
    result = texts, records(lm), elapsed
    lm.close()
    return result


@pytest.fixture
def second(second_server):
    """The session's second real server (tests/conftest.py), up and answering when the test starts whatever an
    earlier test did to it (thawed after a freeze, started again after a kill); the tests here stop and restart it,
    or freeze it."""
    return second_server


def run_with_fault(lm, fault, after: int = 6) -> tuple[list[str], float, dict]:
    """Generate the 48 requests; once ``after`` have finished (the second server has taken calls), ``fault()``
    runs in this thread while the run goes on.  Returns the texts, the time and the log lines."""
    outcome: dict = {}
    batch = requests(lm)

    def generate():
        try:
            outcome["texts"] = lm.generate_until(batch, disable_tqdm=True)
        except BaseException as error:  # noqa: BLE001 - re-raised below
            outcome["error"] = error

    start = time.monotonic()
    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    while len(lm.record_sink._by_task.get("faults", ())) < after and worker.is_alive():
        time.sleep(0.05)
    assert worker.is_alive(), "the run finished before the fault: make it longer"
    fault()
    worker.join(timeout=600)
    assert not worker.is_alive(), "the run hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["texts"], time.monotonic() - start, outcome


def assert_like_healthy(lm, texts, elapsed, healthy, extra: float = 0.0) -> None:
    healthy_texts, healthy_records, healthy_time = healthy
    assert texts == healthy_texts
    assert records(lm) == healthy_records
    limit = 3 * healthy_time + STALL + 5 + extra + 60  # generous: both servers share two cores
    print(f"\n{elapsed:.1f} s with the fault, {healthy_time:.1f} s on one healthy server (stall_timeout {STALL} s)")
    assert elapsed < limit, (elapsed, healthy_time)


def in_flight_on(lm, url: str) -> int:
    """Steps the fleet has sent to ``url`` and not had back yet."""
    engine = lm.step_engine()
    with engine._lock:
        return sum(flight.server.url == url + "/v1" for flight in engine._flights.values())


def test_sigterm_of_a_server_moves_its_requests_and_the_restarted_server_rejoins(
    tiny_model, vllm_server, second, healthy, caplog
):
    """SIGTERM to the server's process group: its engine goes, its HTTP layer drains and holds the connections;
    the stalled calls move once /health stops answering, and the server started again on its port rejoins."""
    lm = fleet_lm(tiny_model, [vllm_server.url, second.url])

    caught: list[int] = []

    def sigterm_then_restart():
        caught.append(in_flight_on(lm, second.url))
        os.killpg(second.process.pid, signal.SIGTERM)
        threading.Timer(1.0, lambda: (second.process.wait(60), second.start(wait=False))).start()

    with caplog.at_level("WARNING", logger="m1_models.server_model"):
        texts, elapsed, _ = run_with_fault(lm, sigterm_then_restart)
    assert_like_healthy(lm, texts, elapsed, healthy, extra=30)
    assert caught[0] > 0  # stopped with calls of the run in flight
    lines = [r.getMessage() for r in caplog.records]
    assert any(second.url in line and "leaves the fleet" in line for line in lines), lines
    second.wait_ready()
    engine = lm.step_engine()
    deadline = time.monotonic() + 60
    while not all(s.alive for s in engine.servers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(s.alive for s in engine.servers)  # the restarted server is back in the fleet
    assert any(second.url in line and "rejoins" in line for line in (r.getMessage() for r in caplog.records))
    lm.close()


def test_a_frozen_server_sigstop_for_the_rest_of_the_run(tiny_model, vllm_server, second, healthy, caplog):
    lm = fleet_lm(tiny_model, [vllm_server.url, second.url])
    caught: list[int] = []

    def freeze():
        caught.append(in_flight_on(lm, second.url))
        os.killpg(second.process.pid, signal.SIGSTOP)

    with caplog.at_level("WARNING", logger="m1_models.server_model"):
        texts, elapsed, _ = run_with_fault(lm, freeze)
    assert_like_healthy(lm, texts, elapsed, healthy)
    assert caught[0] > 0  # it froze with calls of the run in flight, which moved
    warnings = [r.getMessage() for r in caplog.records if second.url in r.getMessage()]
    assert len([w for w in warnings if "leaves the fleet" in w]) == 1, warnings  # one line per server event
    lm.close()


def test_a_frozen_servers_calls_are_hedged_long_before_the_stall_limit(
    tiny_model, vllm_server, second, healthy, caplog
):
    """Tail hedging: with a stall limit of 10 minutes, the calls a frozen server holds are also sent to the idle
    server once they run 3x the fleet's p95 time per token; the first answer wins (the same tokens), the records
    say which server answered, and the frozen server, which does not answer /health, leaves the fleet."""
    lm = fleet_lm(tiny_model, [vllm_server.url, second.url], stall_timeout=600)

    def freeze():
        os.killpg(second.process.pid, signal.SIGSTOP)

    with caplog.at_level("INFO", logger="m1_models.server_model"):
        texts, elapsed, _ = run_with_fault(lm, freeze, after=10)
    assert elapsed < 300  # not the 600 s stall limit: hedged
    engine = lm.step_engine()
    assert engine.hedges > 0
    found = lm.record_sink._by_task["faults"]
    served = {label for record in found for label in record["servers"]}
    assert served <= {vllm_server.url + "/v1", second.url + "/v1"} and vllm_server.url + "/v1" in served
    assert all(len(record["servers"]) == len(record["finish_reasons"]) for record in found)  # one per call
    assert_like_healthy(lm, texts, elapsed, healthy)
    lines = [r.getMessage() for r in caplog.records if second.url in r.getMessage()]
    assert any("is late" in line and "also sent to" in line for line in lines), lines
    assert len([line for line in lines if "leaves the fleet" in line]) == 1, lines
    lm.close()


def test_a_server_frozen_for_20_s_is_left_then_taken_back(tiny_model, vllm_server, second, healthy, caplog):
    lm = fleet_lm(tiny_model, [vllm_server.url, second.url])

    caught: list[int] = []

    def freeze_for_20_s():
        caught.append(in_flight_on(lm, second.url))
        os.killpg(second.process.pid, signal.SIGSTOP)
        threading.Timer(20.0, lambda: os.killpg(second.process.pid, signal.SIGCONT)).start()

    with caplog.at_level("WARNING", logger="m1_models.server_model"):
        texts, elapsed, _ = run_with_fault(lm, freeze_for_20_s)
    assert_like_healthy(lm, texts, elapsed, healthy)
    assert caught[0] > 0
    deadline = time.monotonic() + 60  # SIGCONT at 20 s, then the next probe
    while not all(s.alive for s in lm.step_engine().servers) and time.monotonic() < deadline:
        time.sleep(0.5)
    lines = [r.getMessage() for r in caplog.records if second.url in r.getMessage()]
    assert any("leaves the fleet" in line for line in lines) and any("rejoins" in line for line in lines), lines
    lm.close()


class _FaultyProxy(http.server.ThreadingHTTPServer):
    """A server in front of a real one that answers /v1/models and /health as it does, and its completion calls
    with a fault: ``truncated`` (HTTP 200, the answer cut in the middle of a JSON line, connection closed) or
    ``busy`` (429 with ``Retry-After: 1`` for the first calls, then the real answer)."""

    daemon_threads = True

    def __init__(self, upstream: str, mode: str, busy_calls: int = 4) -> None:
        self.upstream, self.mode, self.busy_calls = upstream, mode, busy_calls
        self.completion_calls: list[tuple[float, bytes]] = []  # (when, the call's body)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FaultyProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        answer = httpx.get(self.server.upstream + self.path, timeout=30)
        self._send(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.completion_calls.append((time.monotonic(), body))
            call = len(self.server.completion_calls)
        if self.server.mode == "busy" and call <= self.server.busy_calls:
            self._send(429, b'{"error": "busy"}', "application/json", {"Retry-After": "1"})
            return
        answer = httpx.post(
            self.server.upstream + self.path, content=body, headers={"content-type": "application/json"}, timeout=120
        )
        if self.server.mode == "truncated":
            cut = answer.content[: max(1, answer.content.find(b'"token_ids"'))]  # inside the first JSON line
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(cut)
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(answer.status_code, answer.content, answer.headers.get("content-type", "text/event-stream"))

    def _send(self, status: int, content: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(content)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(content)


def test_truncated_json_and_429_with_retry_after(tiny_model, vllm_server, healthy, caplog):
    """A server that answers 200 with truncated JSON is retried, then leaves the fleet; one that answers 429
    waits the Retry-After it asks for, then serves."""
    truncated = _FaultyProxy(vllm_server.url, "truncated")
    busy = _FaultyProxy(vllm_server.url, "busy", busy_calls=4)
    lm = fleet_lm(tiny_model, [vllm_server.url, truncated.url, busy.url], max_retries=2)
    with caplog.at_level("WARNING", logger="m1_models.server_model"):
        start = time.monotonic()
        texts = lm.generate_until(requests(lm), disable_tqdm=True)
        elapsed = time.monotonic() - start
    assert_like_healthy(lm, texts, elapsed, healthy)
    servers = {s.url.removesuffix("/v1"): s for s in lm.step_engine().servers}
    assert servers[truncated.url].steps_sent == 0  # none of its answers was taken
    assert any(truncated.url in r.getMessage() and "leaves the fleet" in r.getMessage() for r in caplog.records)
    assert servers[busy.url].steps_sent > 0  # it served once it was no longer busy
    calls = busy.completion_calls
    assert len(calls) > 4
    for when, body in calls[:4]:  # each call that met 429 was sent again, here or elsewhere, after a second
        again = [later for later, same in calls[4:] if same == body]
        assert not again or min(again) - when >= 0.9, (when, again)
    retried = sum(any(same == body for _, same in calls[4:]) for _, body in calls[:4])
    assert retried > 0  # (a retry goes to the same server: the request's phases stay together)
    lm.close()
    truncated.shutdown()
    busy.shutdown()


def test_the_stall_timeout_model_arg(tiny_model, vllm_server):
    from m1_base.errors import ModelArgsError
    from m1_models.server_model import STALL_FLOOR, M1Server

    lm = M1Server(base_url=vllm_server.url, tokenizer=str(tiny_model))
    engine = lm.step_engine()
    assert engine.stall_limit() == STALL_FLOOR  # auto: the floor until calls show longer gaps
    engine._longest_gap = 10.0
    assert engine.stall_limit() == 200.0
    lm.close()
    lm = M1Server(base_url=vllm_server.url, tokenizer=str(tiny_model), stall_timeout=7)
    assert lm.step_engine().stall_limit() == 7
    lm.close()
    for bad in (0, -1, "inf", "soon", True):
        with pytest.raises(ModelArgsError, match="stall_timeout"):
            M1Server(base_url=vllm_server.url, tokenizer=str(tiny_model), stall_timeout=bad)
