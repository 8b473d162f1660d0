"""Reproducible and resumable runs: same seed = same samples; a run killed halfway resumes with --use_cache."""

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

from tests.helpers import read_jsonl, run_lm_eval, write_local_task

pytestmark = pytest.mark.engine

KILL_POINT = Path(__file__).with_name("kill_point.py")

N_GREEDY = 20
N_SAMPLED = 8
ORGANS = ["liver", "pancreas", "kidney", "spleen", "heart", "lung", "thyroid", "adrenal gland"]


def write_tasks(folder: Path) -> None:
    prompts = [
        f"Case {i}: which organ is most likely affected in patient {i}?\n"
        + "\n".join(f"{chr(65 + k)}. {ORGANS[(i + k) % len(ORGANS)]}" for k in range(4))
        for i in range(N_GREEDY)
    ]
    # greedy, the tiny model thinks to the budget: every request is a long (200-token) generation
    budget = {"until": [], "max_tokens_thinking": 200, "max_tokens_answer": 64}
    write_local_task(folder, "m1_e2e_greedy", prompts, {**budget, "do_sample": False})
    write_local_task(
        folder,
        "m1_e2e_sampled",
        prompts[:N_SAMPLED],
        {**budget, "temperature": 1.0, "thinking_n_ignore": 1},
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("resume")
    (folder / "tasks").mkdir()
    write_tasks(folder / "tasks")
    return folder


def command(tiny_model: Path, tasks: Path, out: str, cache: str | None) -> list[str]:
    args = [
        "--model", "m1-vllm",
        # two at a time, so requests finish in waves (a resumed run batches them differently); float32 keeps
        # greedy decoding independent of which requests share a batch
        "--model_args", f"pretrained={tiny_model},max_model_len=1024,max_num_seqs=2,dtype=float32",
        "--tasks", "m1_e2e_greedy,m1_e2e_sampled",
        "--include_path", str(tasks),
        "--apply_chat_template",
        "--output_path", out,
        "--log_samples",
        "--seed", "7",
    ]  # fmt: skip
    return args + (["--use_cache", cache] if cache else [])


def samples_of(out: Path) -> dict[str, str]:
    """Sample files by task, with nothing run-specific left in them."""
    run_dir = next(out.iterdir())
    found = {}
    for path in sorted(run_dir.glob("samples_*.jsonl")):
        task = path.name[len("samples_") :].rsplit("_", 1)[0]
        rows = sorted(read_jsonl(path), key=lambda r: r["doc_id"])
        found[task] = json.dumps(rows, sort_keys=True)
    return found


def results_of(out: Path) -> dict:
    run_dir = next(out.iterdir())
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    return results["results"]


def cache_keys(db: Path) -> list[str]:
    """The keys in lm-eval's --use_cache database (its responses and the m1 records), read-only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return [row[0] for row in connection.execute("SELECT key FROM unnamed")]


@pytest.fixture(scope="module")
def reference_run(workdir, tiny_model):
    result = run_lm_eval(command(tiny_model, workdir / "tasks", "ref", "ref_cache/c"), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "ref"


def test_same_seed_gives_identical_samples(workdir, tiny_model, reference_run):
    result = run_lm_eval(command(tiny_model, workdir / "tasks", "again", None), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = samples_of(reference_run), samples_of(workdir / "again")
    assert set(first) == {"m1_e2e_greedy", "m1_e2e_sampled"}
    assert first == second  # greedy and seeded sampling alike
    texts = {row["resps"][0][0] for row in json.loads(first["m1_e2e_sampled"])}
    assert len(texts) > 1, "sampled generations should differ between documents"


def test_killed_run_resumes_from_the_cache(workdir, tiny_model, reference_run):
    """Killed (SIGKILL, engine processes included) once a third of the requests are done: tests/kill_point.py
    runs the real lm_eval command but stops it, writing a marker file, right after its N-th finished request's
    response and m1 record are committed to the --use_cache database; the kill lands while it waits there."""
    args = command(tiny_model, workdir / "tasks", "resumed", "resume_cache/c")
    total = N_GREEDY + N_SAMPLED
    done_before_kill = total // 3
    marker, log = workdir / "paused.marker", workdir / "killed_run.log"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with log.open("wb") as stderr:  # a file, not a pipe: nobody reads while the run goes on
        process = subprocess.Popen(
            [sys.executable, str(KILL_POINT), str(done_before_kill), str(marker), *args], cwd=workdir, env=env,
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        paused = marker.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the engine's worker processes too
        process.wait()
    assert paused, f"the run never paused after {done_before_kill} requests\n" + log.read_text(errors="replace")[-3000:]
    assert marker.read_text().strip() == str(done_before_kill)
    assert process.returncode == -signal.SIGKILL  # it was still waiting at the kill point
    # exactly what the killed run finished is on disk: one response and one m1 record per finished request
    keys = cache_keys(workdir / "resume_cache" / "c_rank0.db")
    records = [key for key in keys if key.startswith("m1-record\x00")]
    assert (len(keys) - len(records), len(records)) == (done_before_kill, done_before_kill)

    result = run_lm_eval(args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "Cached requests:" in line]
    cached = sum(int(line.split("Cached requests:")[1].split(",")[0]) for line in lines)
    remaining = sum(int(line.split("Requests remaining:")[1]) for line in lines)
    assert (cached, remaining) == (done_before_kill, total - done_before_kill)  # resumed, not restarted
    assert samples_of(workdir / "resumed") == samples_of(reference_run)
    assert results_of(workdir / "resumed") == results_of(reference_run)
    # records of the requests generated before the kill come back from the cache
    run_dir = next((workdir / "resumed").iterdir())
    for task, n in (("m1_e2e_greedy", N_GREEDY), ("m1_e2e_sampled", N_SAMPLED)):
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert sorted(r["doc_id"] for r in records) == list(range(n))
