"""m1-server's secrets under the real ``lm_eval`` command against a real vLLM server: in no output at all.

The session's second vLLM OpenAI server (``second_server`` in conftest.py: tiny model, 127.0.0.1), which demands a
key (``VLLM_API_KEY``: the same check as ``--api-key``, which vLLM's middleware reads from either), serves two runs
of a few ``m1_demo`` documents with ``--log_samples``, ``--use_cache``, ``--show_config`` and ``--verbosity DEBUG``
(the most lm-eval logs):

* ``api_key_env`` names a variable holding the key: the key is really used (the server refuses a request without
  it) and is in no file the run writes, not in its stdout or stderr, not in the server's log;
* ``base_url=http://m1user:PASSWORD@...``: vLLM takes only a Bearer key (a ``user:password@`` becomes an HTTP Basic
  header, which a vLLM with a key refuses, and one without a key ignores), so the address is that of a small gateway
  in front of the server, as a deployment with Basic auth has: it checks the user and password and forwards with
  the server's key.  The password (and its Basic header) is in no output; the results file, lm-eval's log line and
  its summary line show ``m1user:***@``.

Every file under the run's folder, every file written under ``~/.cache`` during the run, stdout, stderr and the
server's log are searched for the key, the password and the Basic header's base64 form.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import SECOND_SERVER_KEY, SECOND_SERVER_KEY_ENV, VLLMServer, read_jsonl, run_lm_eval

pytestmark = [pytest.mark.engine, pytest.mark.cli]

SERVER_KEY, KEY_VARIABLE = SECOND_SERVER_KEY, SECOND_SERVER_KEY_ENV
USER = "m1user"
PASSWORD = "Pw-m1-secret-8d2f"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (SERVER_KEY, PASSWORD, BASIC)


class BasicAuthGateway:
    """A reverse proxy with HTTP Basic auth in front of the server (what nginx with ``auth_basic`` does): requests
    with ``USER:PASSWORD`` go on with the server's key, others get 401."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.accepted = 0
        self.refused = 0
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Basic {BASIC}":
                    gateway.refused += 1
                    self.reply(401, b'{"error": "Unauthorized"}', "application/json")
                    return
                gateway.accepted += 1
                headers = {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}
                answer = httpx.request(method, gateway.upstream + self.path, content=body, headers=headers,
                                       timeout=600)  # fmt: skip
                self.reply(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))

            def reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self.forward("POST")

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def keyed_server(second_server):
    """The session's second server, which refuses requests without ``Bearer SERVER_KEY``."""
    return second_server


@pytest.fixture
def gateway(keyed_server):
    proxy = BasicAuthGateway(keyed_server.url)
    yield proxy
    proxy.close()


def lm_eval_args(model_args: str) -> list[str]:
    return [
        "--model", "m1-server", "--model_args", model_args,
        "--tasks", "m1_demo", "--limit", "3", "--apply_chat_template",
        "--gen_kwargs", "max_tokens_thinking=24,thinking_n_ignore=1,max_tokens_answer=12,do_sample=False",
        "--log_samples", "--output_path", "out", "--use_cache", "cache/m1", "--show_config", "--verbosity", "DEBUG",
    ]  # fmt: skip


def leaks(text: str | bytes) -> list[str]:
    data = text.encode(errors="replace") if isinstance(text, str) else text
    return [secret for secret in SECRETS if secret.encode() in data]


def check_no_secret_anywhere(run_dir: Path, result, server: VLLMServer, started: float) -> dict:
    """Every output of the run holds none of the secrets; returns the results file."""
    assert result.returncode == 0, result.stderr[-4000:]
    assert not leaks(result.stdout), result.stdout[-3000:]
    assert not leaks(result.stderr), [line for line in result.stderr.splitlines() if leaks(line)][:5]
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert any(path.name.startswith("samples_m1_demo") for path in files)
    assert any(path.name.startswith("m1_generations_m1_demo") for path in files)
    assert any(path.name.endswith(".db") for path in files)  # --use_cache
    for path in files:
        assert not leaks(path.read_bytes()), path
    cache = Path.home() / ".cache"
    for path in cache.rglob("*") if cache.is_dir() else ():
        try:
            fresh = path.is_file() and path.stat().st_mtime >= started
            assert not (fresh and leaks(path.read_bytes())), path
        except OSError:  # another job's file that came and went
            continue
    assert not leaks(server.log.read_bytes()), server.log
    [results_file] = run_dir.glob("out/*/results_*.json")
    samples = read_jsonl(next(run_dir.glob("out/*/samples_m1_demo_*.jsonl")))
    assert len(samples) == 3 and all(s["resps"][0][0].startswith("<|im_start|>think") for s in samples)
    return json.loads(results_file.read_text())


def test_the_key_of_api_key_env_is_used_and_is_in_no_output(tiny_model, keyed_server, tmp_path):
    assert httpx.get(keyed_server.url + "/v1/models", timeout=10).status_code == 401  # the key is needed
    started = time.time() - 1
    result = run_lm_eval(
        lm_eval_args(f"base_url={keyed_server.url},tokenizer={tiny_model},api_key_env={KEY_VARIABLE}"),
        cwd=tmp_path, env={KEY_VARIABLE: SERVER_KEY},
    )  # fmt: skip
    results = check_no_secret_anywhere(tmp_path, result, keyed_server, started)
    assert results["config"]["model_args"]["api_key_env"] == KEY_VARIABLE  # the name stays: it is no secret
    assert results["configs"]["m1_demo"]["metadata"]["api_key_env"] == KEY_VARIABLE


def test_a_password_in_base_url_is_sent_and_is_in_no_output(tiny_model, keyed_server, gateway, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE)  # this run has no key (the second server's fixture set it): the gateway holds it
    address = f"127.0.0.1:{gateway.port}"
    assert httpx.get(f"http://{address}/v1/models", timeout=10).status_code == 401  # the password is needed
    started = time.time() - 1
    result = run_lm_eval(
        lm_eval_args(f"base_url=http://{USER}:{PASSWORD}@{address},tokenizer={tiny_model},max_concurrency=4"),
        cwd=tmp_path,
    )
    results = check_no_secret_anywhere(tmp_path, result, keyed_server, started)
    assert gateway.accepted > 3 and gateway.refused == 1  # every call of the run carried the password
    masked = f"http://{USER}:***@{address}"
    assert results["config"]["model_args"]["base_url"] == masked
    assert results["configs"]["m1_demo"]["metadata"]["base_url"] == masked
    # lm-eval's own lines, masked by the start-up hook: the INFO line when it builds the model, the summary line
    assert f"Initializing m1-server model, with arguments: {{'base_url': '{masked}'" in result.stderr
    assert f"m1-server ({{'base_url': '{masked}'" in result.stdout
    assert os.environ.get(KEY_VARIABLE) is None  # this run had no key: the gateway holds it
