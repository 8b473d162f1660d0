"""The two killed-and-resumed runs that test_sweep.py and test_resume_determinism.py both check (a pytest plugin,
loaded by conftest.py, so that each runs once a session; both files are one xdist group).

* ``resumed_sweep``: ``m1-sweep`` over budgets {24, 64} x "Wait" rounds {0, 1} on ``m1_demo`` (seeded sampling,
  float32), killed (SIGKILL, engine processes included) right after its 30th of 120 finished requests is in the
  ``--use_cache`` database, then run again;
* ``resumed_lm_eval``: the plain ``lm_eval`` command for one of those settings (budget 24, one "Wait" round, the
  same seed), killed after its 10th of 30 requests, then run again.

Each command runs in two processes, and so does every comparison made between them: the sweep's folder for that
setting must equal the ``lm_eval`` run's (a sweep's folder is a separate run's; the same seed gives the same
samples, whichever process generated each and whatever the kill split off), and each resumed run must have taken
what its killed run finished from the cache.  ``tests/kill_point.py`` stops a run at the request the test chose.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import cache_keys, kill_after, read_jsonl, run_command

SETTINGS = ("budget_24_ignore_0", "budget_24_ignore_1", "budget_64_ignore_0", "budget_64_ignore_1")
#: the setting the plain lm_eval run repeats
SEPARATE_SETTING = "budget_24_ignore_1"
SWEEP_REQUESTS, SWEEP_DONE_BEFORE_KILL = 120, 30
LM_EVAL_REQUESTS, LM_EVAL_DONE_BEFORE_KILL = 30, 10

#: float32 keeps decoding independent of batch composition: a run resumed after a kill, which batches the requests
#: left differently, gives what a run with all at once gives
MODEL_ARGS = "max_model_len=1024,dtype=float32"
GEN_KWARGS = "temperature=0.8,max_tokens_answer=32"
SEED = "3"


def sweep_args(tiny_model: Path, out: str, cache: str | None = None) -> list[str]:
    args = [
        "--model", "m1-vllm",
        "--model_args", f"pretrained={tiny_model},{MODEL_ARGS}",
        "--tasks", "m1_demo",
        "--apply_chat_template",
        "--gen_kwargs", GEN_KWARGS,
        "--budgets", "24,64", "--ignores", "0,1",
        "--seed", SEED,
        "--output_path", out,
        "--verbosity", "INFO",
    ]  # fmt: skip
    return args + (["--use_cache", cache] if cache else [])


def lm_eval_args(tiny_model: Path, out: str, cache: str) -> list[str]:
    """``lm_eval`` for the sweep's setting SEPARATE_SETTING, as a user would run it on its own."""
    return [
        "--model", "m1-vllm",
        "--model_args", f"pretrained={tiny_model},{MODEL_ARGS}",
        "--tasks", "m1_demo", "--apply_chat_template", "--seed", SEED,
        "--gen_kwargs", f"{GEN_KWARGS},max_tokens_thinking=24,thinking_n_ignore=1",
        "--output_path", out, "--log_samples",
        "--use_cache", cache,
    ]  # fmt: skip


def run_sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_command("m1-sweep", args, cwd, timeout=900)


def run_files(folder: Path) -> dict[str, object]:
    """What a run of m1_demo means: per-sample responses and metrics, the results, the m1 records (no dates, no
    paths)."""
    [model_dir] = list(folder.iterdir())
    samples = sorted(read_jsonl(next(model_dir.glob("samples_m1_demo_*.jsonl"))), key=lambda r: r["doc_id"])
    records = sorted(read_jsonl(next(model_dir.glob("m1_generations_m1_demo_*.jsonl"))), key=lambda r: r["doc_id"])
    results = json.loads(next(model_dir.glob("results_*.json")).read_text())
    fields = ("forced", "budget", "prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit",
              "finish_reasons", "thinking_text", "answer_text", "doc_id", "prompt_hash", "request_hash")  # fmt: skip
    return {
        "samples": [(s["doc_id"], s["resps"], s["acc"], s["prompt_hash"]) for s in samples],
        "acc": results["results"]["m1_demo"]["acc,none"],
        "gen_kwargs": results["configs"]["m1_demo"]["generation_kwargs"],
        "records": [{k: r[k] for k in fields} for r in records],
    }


@dataclass(frozen=True)
class KilledRun:
    """A command killed after ``done_before_kill`` finished requests and run again to the end."""

    workdir: Path  # where both ran
    out: Path  # the --output_path both wrote to
    keys_at_kill: list[str]  # the --use_cache database's keys when the killed run died
    stderr: str  # the resumed run's


def killed_and_resumed(
    command: str, args: list[str], n: int, workdir: Path, out: str, check_killed: Callable[[], None] = lambda: None
) -> KilledRun:
    """``command args`` killed after its ``n``-th finished request (``check_killed`` then looks at what it left),
    then run again to the end."""
    kill_after(command, args, n, workdir)
    keys = cache_keys(workdir / "cache" / "c_rank0.db")
    check_killed()
    result = run_command(command, args, workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return KilledRun(workdir, workdir / out, keys, result.stderr)


@pytest.fixture(scope="session")
def resumed_sweep(tmp_path_factory, tiny_model) -> KilledRun:
    from m1_eval.sweep import is_complete

    workdir = tmp_path_factory.mktemp("sweep")

    def killed_while_generating() -> None:
        assert not any(is_complete(workdir / "resumed" / name) for name in SETTINGS)

    args = sweep_args(tiny_model, "resumed", "cache/c")
    return killed_and_resumed("m1-sweep", args, SWEEP_DONE_BEFORE_KILL, workdir, "resumed", killed_while_generating)


@pytest.fixture(scope="session")
def resumed_lm_eval(tmp_path_factory, tiny_model) -> KilledRun:
    workdir = tmp_path_factory.mktemp("lm_eval_resume")
    args = lm_eval_args(tiny_model, "separate", "cache/c")
    return killed_and_resumed("lm_eval", args, LM_EVAL_DONE_BEFORE_KILL, workdir, "separate")
