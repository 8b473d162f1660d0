"""Reproducible and resumable runs: same seed = same samples; a run killed halfway resumes with --use_cache."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import LM_EVAL, read_jsonl, run_lm_eval, write_local_task

pytestmark = pytest.mark.engine

N_GREEDY = 40
N_SAMPLED = 8
ORGANS = ["liver", "pancreas", "kidney", "spleen", "heart", "lung", "thyroid", "adrenal gland"]


def write_tasks(folder: Path) -> None:
    prompts = [
        f"Case {i}: which organ is most likely affected in patient {i}?\n"
        + "\n".join(f"{chr(65 + k)}. {ORGANS[(i + k) % len(ORGANS)]}" for k in range(4))
        for i in range(N_GREEDY)
    ]
    # greedy, the tiny model thinks to the budget: 400 tokens make the generation last seconds, time for the
    # kill test to see a third of the requests done before the rest are
    budget = {"until": [], "max_tokens_thinking": 400, "max_tokens_answer": 64}
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
        # two at a time, so requests finish in waves and a kill lands halfway; float32 keeps greedy decoding
        # independent of which requests share a batch
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
    """Killed (SIGKILL, engine processes included) once a third of the requests are done, by the run's own
    progress bar: lm-eval's cache database is written by SqliteDict's writer thread, whose commits a reader sees
    late and in bursts (or not at all while it holds the lock), so the database cannot time the kill."""
    args = command(tiny_model, workdir / "tasks", "resumed", "resume_cache/c")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}  # progress as it happens
    process = subprocess.Popen(
        [LM_EVAL, *args], cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    total = N_GREEDY + N_SAMPLED
    progress = re.compile(rb"m1 generate:[^\r\n]*?(\d+)/(\d+)")
    seen = bytearray()
    finished = threading.Event()

    def watch() -> None:
        assert process.stderr is not None
        while chunk := process.stderr.read1(4096):
            seen.extend(chunk)
            counts = [int(m.group(1)) for m in progress.finditer(seen[-4096:])]
            if counts and max(counts) >= total // 3:
                finished.set()
        finished.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert finished.wait(timeout=300), "the run never reached a third of its requests"
    assert process.poll() is None, seen.decode(errors="replace")[-3000:]
    os.killpg(process.pid, signal.SIGKILL)  # the engine's worker processes too
    process.wait()
    watcher.join(timeout=10)

    result = run_lm_eval(args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "Cached requests:" in line]
    cached = sum(int(line.split("Cached requests:")[1].split(",")[0]) for line in lines)
    remaining = sum(int(line.split("Requests remaining:")[1]) for line in lines)
    assert cached + remaining == total and 0 < cached < total, (cached, remaining)  # resumed, not restarted
    assert samples_of(workdir / "resumed") == samples_of(reference_run)
    assert results_of(workdir / "resumed") == results_of(reference_run)
    # records of the requests generated before the kill come back from the cache
    run_dir = next((workdir / "resumed").iterdir())
    for task, n in (("m1_e2e_greedy", N_GREEDY), ("m1_e2e_sampled", N_SAMPLED)):
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert sorted(r["doc_id"] for r in records) == list(range(n))
