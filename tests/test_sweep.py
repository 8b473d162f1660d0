"""``m1-sweep``: one model load, every setting a standard lm-eval folder equal to a separate run's, resumable."""

from __future__ import annotations

import json
import shutil

import pytest

from m1_eval.sweep import Setting, SweepError, check_sampled, is_complete, parse_repeats, parse_settings
from tests.helpers import cache_counts
from tests.killed_runs import (
    SEPARATE_SETTING,
    SETTINGS,
    SWEEP_DONE_BEFORE_KILL,
    SWEEP_REQUESTS,
    run_files,
    run_sweep,
    sweep_args,
)


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
# The sweep and the lm_eval run compared with it were each killed partway and resumed (tests/killed_runs.py).


@pytest.mark.cli
@pytest.mark.engine
def test_a_sweep_writes_one_lm_eval_folder_per_setting_equal_to_a_separate_run(
    resumed_sweep, resumed_lm_eval, tmp_path
):
    sweep_dir = resumed_sweep.out
    assert sorted(p.name for p in sweep_dir.iterdir()) == sorted(SETTINGS)
    for name in SETTINGS:
        files = run_files(sweep_dir / name)
        assert len(files["samples"]) == 30 and len(files["records"]) == 30
    results = json.loads(next((sweep_dir / "budget_64_ignore_1").glob("*/results_*.json")).read_text())
    assert results["config"]["model"] == "m1-vllm" and results["config"]["m1_sweep"]["budget"] == 64
    assert results["chat_template"]  # recorded as lm_eval records it
    assert all(r["ignore_rounds"] <= 1 and r["thinking_tokens"] <= 64
               for r in run_files(sweep_dir / "budget_64_ignore_1")["records"])  # fmt: skip
    # the smallest setting with a "Wait" round, which takes its steps from the larger ones (nested), equals the
    # plain lm_eval run of that setting alone
    swept = run_files(sweep_dir / SEPARATE_SETTING)
    model_dir = next((sweep_dir / SEPARATE_SETTING).iterdir())
    taken = [json.loads(line)["reused_tokens"] for line in next(model_dir.glob("m1_generations_*.jsonl")).open()]
    assert sum(taken) > 0  # the nesting happened
    alone = run_files(resumed_lm_eval.out)
    assert swept["samples"] == alone["samples"]
    assert swept["records"] == alone["records"]
    assert swept["acc"] == alone["acc"] and swept["gen_kwargs"] == alone["gen_kwargs"]
    # the report reads the sweep like any runs: one column of the budget curve per setting
    from m1_reports.cli import main as report_main

    assert report_main([*(str(sweep_dir / s) for s in SETTINGS), "--out", str(tmp_path / "report"), "-q"]) == 0
    assert (tmp_path / "report" / "budget_scaling.csv").read_text().count("\n") >= 4


@pytest.mark.cli
@pytest.mark.engine
def test_a_killed_sweep_resumes_and_skips_finished_settings(resumed_sweep, tiny_model):
    """Killed (SIGKILL, engine processes included) right after its 30th finished request of 120 is in the cache
    (tests/kill_point.py pauses it there), then run again."""
    responses = [key for key in resumed_sweep.keys_at_kill if not key.startswith("m1-record\x00")]
    assert len(responses) == SWEEP_DONE_BEFORE_KILL
    # resumed, not restarted
    assert cache_counts(resumed_sweep.stderr) == (SWEEP_DONE_BEFORE_KILL, SWEEP_REQUESTS - SWEEP_DONE_BEFORE_KILL)
    before = {name: run_files(resumed_sweep.out / name) for name in SETTINGS}

    # a finished setting is skipped; a missing one is written again, from the cache, without the engine
    shutil.rmtree(resumed_sweep.out / "budget_24_ignore_1")  # the setting the nesting took its steps for
    again = run_sweep(sweep_args(tiny_model, "resumed", "cache/c"), resumed_sweep.workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    skipped = [line for line in again.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 3 and not any("budget_24_ignore_1" in line for line in skipped)
    assert "Initializing a V1 LLM engine" not in again.stderr
    assert {name: run_files(resumed_sweep.out / name) for name in SETTINGS} == before
