"""m1-server against real vLLM OpenAI servers (started by the tests, tiny model, float32, 127.0.0.1).

Parity with m1-vllm under greedy decoding, a two-server fleet, a server killed and restarted mid-run, a server
that never comes back (one error line, non-zero exit, resume with --use_cache), and the API key in no output.

Seeded sampling is compared between servers only: m1-vllm runs a request's steps as one vLLM session, whose random
stream runs on through the steps, while each step over HTTP is a request of its own, its stream restarted from
the seed (both reproducible; docs/budget-forcing.md).
"""

from __future__ import annotations

import threading
import time

import pytest
from lm_eval.api.instance import Instance

from m1_models.records import RecordSink
from tests.helpers import PARITY_GEN_KWARGS as GREEDY
from tests.helpers import (
    QUESTION,
    SECOND_SERVER_KEY,
    cached_responses,
    parity_instances,
    parity_records,
    read_jsonl,
    run_lm_eval,
    second_server_key_args,
    write_local_task,
)

pytestmark = pytest.mark.engine


def server_lm(tiny_model, url: str, **kwargs):
    """m1-server on ``url``, with the key the session's second server demands when it is in ``url``."""
    from m1_models.server_model import M1Server

    lm = M1Server(base_url=url, tokenizer=str(tiny_model), **{**second_server_key_args(), **kwargs})
    lm.record_sink = RecordSink()
    return lm


def instances(lm, task: str = "server_test") -> list[Instance]:
    return parity_instances(lm, task)


def records_of(lm, task: str = "server_test") -> dict[int, dict]:
    return parity_records(lm, task)


def sampled(i: int) -> bool:
    """Request ``i`` of :func:`instances` samples (its group of PARITY_GEN_KWARGS has a temperature)."""
    return bool(GREEDY[i // 3].get("temperature"))


@pytest.fixture(scope="module")
def server_reference(tiny_model, vllm_server):
    """m1-server's texts and records on the session's one server: what a fleet and a restarted server must give."""
    lm = server_lm(tiny_model, vllm_server.url)
    try:
        texts = lm.generate_until(instances(lm), disable_tqdm=True)
        return texts, records_of(lm)
    finally:
        lm.close()


def test_greedy_parity_with_m1_vllm(tiny_model, vllm_server, float32_reference, server_reference):
    lm = server_lm(tiny_model, vllm_server.url)
    assert lm.max_model_len == 2048 and lm.model_name == str(tiny_model)
    texts, records = server_reference
    ref_texts, ref_records = float32_reference  # m1-vllm, in-process, float32 like the servers
    greedy = [i for i in range(len(texts)) if not sampled(i)]
    same = [i for i in greedy if texts[i] == ref_texts[i]]
    print(f"\nm1-server vs m1-vllm: {len(same)}/{len(greedy)} greedy responses byte-identical")
    for i in greedy:
        if i in same:
            assert records[i] == ref_records[i]  # token counts, rounds, budget hits, texts
        else:  # a near-tie flipped: report where
            print(f"  request {i} ({GREEDY[i // 3]}) differs")
    assert len(same) == len(greedy) >= 9
    assert any(records[i]["budget_hit"] for i in greedy)
    assert any(records[i]["ignore_rounds"] for i in range(len(texts)) if sampled(i))  # early ends, "Wait" rounds
    # text mode (for servers that return no token ids): same budget accounting, same greedy text here
    text_lm = server_lm(tiny_model, vllm_server.url, token_ids="text")
    text_texts = text_lm.generate_until(instances(text_lm), disable_tqdm=True)
    text_records = records_of(text_lm)
    for record in text_records.values():
        if record["budget"] is not None:
            assert record["thinking_tokens"] <= record["budget"]
    same_text = sum(a == b for a, b in zip(text_texts, texts, strict=True))
    print(f"token_ids=text vs token ids: {same_text}/{len(texts)} byte-identical responses")
    assert same_text >= len(texts) * 3 // 4
    lm.close()
    text_lm.close()


def test_a_fleet_of_two_spreads_requests_and_keeps_phases_together(
    tiny_model, vllm_server, second_server, server_reference
):
    lm = server_lm(tiny_model, f"{vllm_server.url}|{second_server.url}", max_concurrency=4)
    engine = lm.step_engine()
    routes: dict[int, set[str]] = {}
    submit = engine.submit

    def recording_submit(key, step):
        submit(key, step)
        routes.setdefault(key, set()).add(engine._flights[key].server.url)

    engine.submit = recording_submit
    texts = lm.generate_until(instances(lm), disable_tqdm=True)
    assert texts == server_reference[0]
    sent = {server.url: server.steps_sent for server in engine.servers}
    assert all(count > 0 for count in sent.values()), sent
    assert all(len(urls) == 1 for urls in routes.values())  # every phase of a request on one server
    lm.close()


def test_a_server_killed_mid_run_and_restarted_gives_the_same_results(tiny_model, second_server, server_reference):
    lm = server_lm(tiny_model, second_server.url, max_concurrency=2, max_retries=40)
    requests = instances(lm)
    outcome: dict = {}

    def generate():
        try:
            outcome["texts"] = lm.generate_until(requests, disable_tqdm=True)
        except BaseException as error:  # noqa: BLE001
            outcome["error"] = error

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    finished = lambda: len(lm.record_sink._by_task.get("server_test", ()))  # noqa: E731
    while not finished() and time.monotonic() < deadline:  # the first request finished
        time.sleep(0.05)
    done_before = finished()
    second_server.kill()
    time.sleep(2)
    second_server.start()
    worker.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert done_before < len(requests), "the run finished before the kill: make it longer"
    assert outcome["texts"] == server_reference[0]
    assert records_of(lm) == server_reference[1]
    lm.close()


def _cache_rows(path) -> int:
    """Responses (not m1 records) in the --use_cache database of prefix ``path``."""
    return cached_responses(path.with_name(path.name + "_rank0.db"))


@pytest.mark.cli
def test_a_server_that_never_comes_back_stops_the_run_and_use_cache_resumes(
    tiny_model, vllm_server, second_server, tmp_path
):
    import subprocess

    secret = SECOND_SERVER_KEY  # the key the second server demands
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    prompts = [QUESTION + f"\nCase {i}." for i in range(12)]
    write_local_task(tasks, "m1_server_local", prompts, {"until": [], "max_gen_toks": 64})
    cache = tmp_path / "cache" / "m1"
    cache.parent.mkdir()

    def command(url: str, retries: int, concurrency: int) -> list[str]:
        return [
            "--model", "m1-server",
            "--model_args",
            f"base_url={url},tokenizer={tiny_model},api_key_env=M1_TEST_KEY,max_concurrency={concurrency},"
            f"max_retries={retries}",
            "--tasks", "m1_server_local", "--include_path", str(tasks), "--apply_chat_template",
            "--gen_kwargs", "max_tokens_thinking=400,thinking_n_ignore=1,do_sample=False",
            "--use_cache", str(cache), "--output_path", "out", "--log_samples",
        ]  # fmt: skip

    env = {"M1_TEST_KEY": secret}
    full = dict(os_env_with(env))
    process = subprocess.Popen(
        [_lm_eval(), *command(second_server.url, 1, 1)], cwd=tmp_path, env=full, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while _cache_rows(cache) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second_server.kill()  # never comes back
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode not in (0, None), stderr[-2000:]
    error_lines = [line for line in stderr.splitlines() if line.startswith("lm_eval: error:")]
    assert len(error_lines) == 1, stderr[-3000:]
    line = error_lines[0]
    assert "no server left" in line and second_server.url in line and "request m1-" in line and "--use_cache" in line
    assert "Traceback" not in stderr
    cached = _cache_rows(cache)
    assert 2 <= cached < 12

    # one request at a time above, so that the kill lands mid-run; the rerun's 400-token requests all at once
    rerun = run_lm_eval(command(vllm_server.url, 3, 12), cwd=tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = rerun.stdout + rerun.stderr
    assert f"Cached requests: {cached}, Requests remaining: {12 - cached}" in log, log[-3000:]
    assert f"m1 generate:   0%|          | 0/{12 - cached} " in log  # only the missing ones were generated
    run_dir = next((tmp_path / "out").iterdir())
    samples = read_jsonl(next(run_dir.glob("samples_m1_server_local_*.jsonl")))
    assert len(samples) == 12 and all(s["resps"][0][0].startswith("<|im_start|>think\n") for s in samples)

    for output in (stdout, stderr, rerun.stdout, rerun.stderr):
        assert secret not in output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    for server in (vllm_server, second_server):
        assert secret not in server.log.read_text(errors="replace")


def os_env_with(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, "TOKENIZERS_PARALLELISM": "false", **extra}


def _lm_eval() -> str:
    from tests.helpers import LM_EVAL

    return LM_EVAL


def test_model_args_errors_are_one_line_and_early(tiny_model, vllm_server, monkeypatch):
    from m1_base.errors import ModelArgsError
    from m1_models.server_model import M1Server

    cases = [
        ({"base_url": "localhost:1"}, "not an http"),
        ({"base_url": vllm_server.url, "api_key": "sk-x"}, "api_key_env"),
        ({"base_url": vllm_server.url, "api_key_env": "M1_NO_SUCH_VARIABLE"}, "names no environment variable"),
        ({"base_url": vllm_server.url, "model": "other"}, "not served"),
        ({"base_url": f"http://127.0.0.1:{_closed_port()}"}, "no server answers"),
        ({"base_url": vllm_server.url, "token_ids": "both"}, "token_ids"),
    ]
    monkeypatch.delenv("M1_NO_SUCH_VARIABLE", raising=False)
    for kwargs, match in cases:
        with pytest.raises(ModelArgsError, match=match) as error:
            M1Server(tokenizer=str(tiny_model), **kwargs)
        assert "\n" not in str(error.value)


def _closed_port() -> int:
    from tests.helpers import free_port

    return free_port()
