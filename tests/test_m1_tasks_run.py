"""The m1 tasks under the plain ``lm_eval`` command on the tiny model (no --include_path)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import PARTIAL, REPO, read_jsonl, run_lm_eval

TABLE1 = [
    "m1_medmcqa", "m1_medqa", "m1_pubmedqa", "m1_mmlu_pro_med", "m1_gpqa_med",
    "m1_lancet", "m1_medbullets_op4", "m1_medbullets_op5", "m1_medxpertqa", "m1_nejm",
]  # fmt: skip


@pytest.mark.cli
@pytest.mark.engine
@pytest.mark.skipif(not PARTIAL.exists(), reason=f"m1 evaluation data not found at {PARTIAL}")
def test_every_m1_task_runs_with_budget_forcing(tiny_model, tmp_path):
    data = json.loads(PARTIAL.read_text())
    data.update(json.loads((REPO / "tests" / "fixtures" / "lancet_nejm.json").read_text()))  # not in the partial
    local = tmp_path / "m1_eval_data.json"
    local.write_text(json.dumps(data))
    result = run_lm_eval(
        [
            "--model",
            "m1-vllm",
            "--model_args",
            f"pretrained={tiny_model},max_model_len=2048",
            "--tasks",
            "m1_table1,m1_hle",
            "--limit",
            "2",
            "--apply_chat_template",
            "--gen_kwargs",
            "max_tokens_thinking=64,max_tokens_answer=32",
            "--output_path",
            "out",
            "--log_samples",
        ],  # fmt: skip
        cwd=tmp_path,
        env={"M1_EVAL_DATA": str(local)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "out").iterdir())
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    for task in [*TABLE1, "m1_hle"]:
        samples = read_jsonl(next(run_dir.glob(f"samples_{task}_*.jsonl")))
        assert len(samples) == 2
        for sample in samples:
            assert {"acc", "acc_strict", "no_answer"} <= set(sample)
            assert sample["acc"] in (0, 1) and sample["acc_strict"] <= sample["acc"]
            prompt = sample["arguments"]["gen_args_0"]["arg_0"]
            assert prompt.rstrip().endswith(
                "Return your final response within \\boxed{}.<|im_end|>\n<|im_start|>assistant"
            )
            assert sample["resps"][0][0].startswith("<|im_start|>think\n")
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert len(records) == 2 and all(r["thinking_tokens"] <= 64 for r in records)
    group = results["results"]["m1_table1"]
    mean = sum(results["results"][t]["acc,none"] for t in TABLE1) / len(TABLE1)
    assert group["acc,none"] == pytest.approx(mean)  # the paper's Avg: unweighted mean of the ten
    check_report_reads_the_run(tmp_path / "out", results, run_dir, tmp_path / "report")


def check_report_reads_the_run(out, results, run_dir, report_dir):
    """m1-report on real m1-vllm output: every number equals lm-eval's results and the m1 records."""
    import pandas as pd

    from m1_reports.cli import main as report_main

    assert report_main([str(out), "--out", str(report_dir), "--baseline", "HuatuoGPT-o1-8B", "-q"]) == 0
    run_tasks = pd.read_csv(report_dir / "run_tasks.csv").set_index("task")
    for task in [*TABLE1, "m1_hle"]:
        row = run_tasks.loc[task]
        assert row["acc"] == pytest.approx(results["results"][task]["acc,none"])
        assert row["acc_strict"] == pytest.approx(results["results"][task]["acc_strict,none"])
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert row["thinking_tokens_mean"] == pytest.approx(sum(r["thinking_tokens"] for r in records) / 2)
        assert row["budget"] == 64
    table = pd.read_csv(report_dir / "table1.csv").set_index("model")
    ours = table[table["source"] == "run"].iloc[0]
    assert ours["Avg"] == pytest.approx(100 * results["results"]["m1_table1"]["acc,none"], abs=0.01)
    assert "HuatuoGPT-o1-8B" in table.index
