"""``m1-sweep``: one model load, every setting a standard lm-eval folder equal to a separate run's, resumable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from m1_eval.sweep import Setting, SweepError, check_sampled, is_complete, parse_repeats, parse_settings
from tests.helpers import cache_counts, cached_responses, kill_after, read_jsonl, run_lm_eval

M1_SWEEP = str(Path(sys.executable).with_name("m1-sweep"))
SETTINGS = ("budget_24_ignore_0", "budget_24_ignore_1", "budget_64_ignore_0", "budget_64_ignore_1")


def test_settings_are_the_product_of_budgets_and_ignores():
    assert parse_settings("24,64", "0,1") == [Setting(24, 0), Setting(24, 1), Setting(64, 0), Setting(64, 1)]
    assert [s.name for s in parse_settings("none,32", "0,2")] == [
        "budget_none_ignore_0",
        "budget_32_ignore_0",
        "budget_32_ignore_2",
    ]
    assert Setting(32, 2).gen_kwargs({"temperature": 0.7}) == {
        "temperature": 0.7,
        "max_tokens_thinking": 32,
        "thinking_n_ignore": 2,
    }
    assert Setting(None, 0).gen_kwargs({"temperature": 0.7}) == {"temperature": 0.7}


@pytest.mark.parametrize(("budgets", "ignores", "needle"), [("x", "0", "--budgets"), ("0", "0", ">= 1"),
                                                             ("32", "-1", "--ignores"), ("32", "a", "--ignores")])
def test_bad_settings_are_one_line_errors(budgets, ignores, needle):
    with pytest.raises(SweepError, match=needle) as error:
        parse_settings(budgets, ignores)
    assert "\n" not in str(error.value)


def test_repeats_are_a_whole_number_and_need_sampling():
    assert parse_repeats("8") == 8 and parse_repeats(1) == 1
    for bad in ("0", "x", "1.5", "true", "2000"):
        with pytest.raises(SweepError, match="--repeats"):
            parse_repeats(bad)
    check_sampled({"temperature": 0.6}, 8)
    for greedy in ({}, {"temperature": 0}, {"temperature": "0.0"}, {"do_sample": False}):
        with pytest.raises(SweepError, match="identical samples.*temperature=") as error:
            check_sampled(greedy, 8)
        assert "\n" not in str(error.value)


def test_a_folder_counts_as_done_only_with_results(tmp_path):
    assert not is_complete(tmp_path / "missing")
    (tmp_path / "model").mkdir()
    assert not is_complete(tmp_path)
    (tmp_path / "model" / "results_2026.json").write_text("{}")
    assert is_complete(tmp_path)


# ------------------------------------------------------------------------------------------- real engine

#: float32 keeps decoding independent of batch composition: a run resumed after a kill, which batches the requests
#: left differently, gives what a run with all at once gives
MODEL_ARGS = "max_model_len=1024,dtype=float32"


def sweep_args(tiny_model: Path, out: str, cache: str | None = None) -> list[str]:
    args = [
        "--model", "m1-vllm",
        "--model_args", f"pretrained={tiny_model},{MODEL_ARGS}",
        "--tasks", "m1_demo",
        "--apply_chat_template",
        "--gen_kwargs", "temperature=0.8,max_tokens_answer=32",
        "--budgets", "24,64", "--ignores", "0,1",
        "--seed", "3",
        "--output_path", out,
        "--verbosity", "INFO",
    ]  # fmt: skip
    return args + (["--use_cache", cache] if cache else [])


def run_sweep(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([M1_SWEEP, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def run_files(folder: Path) -> dict[str, object]:
    """What a run means: per-sample responses and metrics, the results, the m1 records (no dates, no paths)."""
    [model_dir] = list(folder.iterdir())
    samples = sorted(read_jsonl(next(model_dir.glob("samples_m1_demo_*.jsonl"))), key=lambda r: r["doc_id"])
    records = sorted(read_jsonl(next(model_dir.glob("m1_generations_m1_demo_*.jsonl"))), key=lambda r: r["doc_id"])
    results = json.loads(next(model_dir.glob("results_*.json")).read_text())
    fields = ("forced", "budget", "prompt_tokens", "thinking_tokens", "answer_tokens", "ignore_rounds", "budget_hit",
              "finish_reasons", "thinking_text", "answer_text", "doc_id", "prompt_hash", "request_hash")
    return {
        "samples": [(s["doc_id"], s["resps"], s["acc"], s["prompt_hash"]) for s in samples],
        "acc": results["results"]["m1_demo"]["acc,none"],
        "gen_kwargs": results["configs"]["m1_demo"]["generation_kwargs"],
        "records": [{k: r[k] for k in fields} for r in records],
    }


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("sweep")
    result = run_sweep(sweep_args(tiny_model, "ref"), folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "ref"


@pytest.mark.cli
@pytest.mark.engine
def test_a_sweep_writes_one_lm_eval_folder_per_setting_equal_to_a_separate_run(sweep_dir, tiny_model, tmp_path):
    assert sorted(p.name for p in sweep_dir.iterdir()) == sorted(SETTINGS)
    for name in SETTINGS:
        files = run_files(sweep_dir / name)
        assert len(files["samples"]) == 30 and len(files["records"]) == 30
    results = json.loads(next((sweep_dir / "budget_64_ignore_1").glob("*/results_*.json")).read_text())
    assert results["config"]["model"] == "m1-vllm" and results["config"]["m1_sweep"]["budget"] == 64
    assert results["chat_template"]  # recorded as lm_eval records it
    assert all(r["ignore_rounds"] <= 1 and r["thinking_tokens"] <= 64
               for r in run_files(sweep_dir / "budget_64_ignore_1")["records"])  # fmt: skip
    # the smallest setting with a "Wait" round, which takes its steps from the larger ones (nested), as a plain
    # lm_eval run
    swept = run_files(sweep_dir / "budget_24_ignore_1")
    model_dir = next((sweep_dir / "budget_24_ignore_1").iterdir())
    taken = [json.loads(line)["reused_tokens"] for line in next(model_dir.glob("m1_generations_*.jsonl")).open()]
    assert sum(taken) > 0  # the nesting happened
    separate = run_lm_eval(
        [
            "--model", "m1-vllm",
            "--model_args", f"pretrained={tiny_model},{MODEL_ARGS}",
            "--tasks", "m1_demo", "--apply_chat_template", "--seed", "3",
            "--gen_kwargs", "temperature=0.8,max_tokens_answer=32,max_tokens_thinking=24,thinking_n_ignore=1",
            "--output_path", "separate", "--log_samples",
        ],  # fmt: skip
        cwd=tmp_path,
    )
    assert separate.returncode == 0, separate.stderr[-3000:]
    alone = run_files(tmp_path / "separate")
    assert swept["samples"] == alone["samples"]
    assert swept["records"] == alone["records"]
    assert swept["acc"] == alone["acc"] and swept["gen_kwargs"] == alone["gen_kwargs"]
    # the report reads the sweep like any runs: one column of the budget curve per setting
    from m1_reports.cli import main as report_main

    assert report_main([*(str(sweep_dir / s) for s in SETTINGS), "--out", str(tmp_path / "report"), "-q"]) == 0
    assert (tmp_path / "report" / "budget_scaling.csv").read_text().count("\n") >= 4


@pytest.mark.cli
@pytest.mark.engine
def test_a_killed_sweep_resumes_and_skips_finished_settings(sweep_dir, tiny_model, tmp_path):
    """Killed (SIGKILL, engine processes included) right after its 30th finished request of 120 is in the cache
    (tests/kill_point.py pauses it there), then run again."""
    args = sweep_args(tiny_model, "resumed", "cache/c")
    kill_after("m1-sweep", args, 30, tmp_path)
    done_before = cached_responses(tmp_path / "cache" / "c_rank0.db")
    assert done_before == 30
    assert not any(is_complete(tmp_path / "resumed" / name) for name in SETTINGS)  # killed while generating

    result = run_sweep(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert cache_counts(result.stderr) == (30, 90)  # resumed, not restarted
    for name in SETTINGS:  # records of requests generated before the kill come back from the cache
        assert run_files(tmp_path / "resumed" / name) == run_files(sweep_dir / name)

    # a finished setting is skipped; a missing one is written again, from the cache, without the engine
    shutil.rmtree(tmp_path / "resumed" / "budget_24_ignore_1")
    again = run_sweep(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    skipped = [line for line in again.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 3 and not any("budget_24_ignore_1" in line for line in skipped)
    assert "Initializing a V1 LLM engine" not in again.stderr
    assert run_files(tmp_path / "resumed" / "budget_24_ignore_1") == run_files(sweep_dir / "budget_24_ignore_1")
