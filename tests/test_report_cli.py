"""The ``m1-report`` command end to end, and the reader on real lm-eval 0.4.13 output (its ``dummy`` model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from m1_reports.cli import main
from tests.report_fixtures import small_table1, write_run

EXPECTED = {
    "table1.md", "table1.csv", "table1.tex", "index.html", "samples.html", "paired.csv", "paired.md",
    "budget_scaling.csv", "budget_scaling.md", "scoring.csv", "scoring.md", "leaderboard.json",
    "leaderboard.csv", "runs.csv", "run_tasks.csv",
}  # fmt: skip


def test_the_issue_command(tmp_path, monkeypatch, capsys):
    """`m1-report out/run_a out/run_b --baseline HuatuoGPT-o1-8B` writes reports/<name>/."""
    monkeypatch.chdir(tmp_path)
    write_run(Path("out/run_a"), small_table1(0.01, seed=1, budget=2048), model="UCSC-VLAA/m1-7B-23K",
              gen_kwargs="max_tokens_thinking=2048,thinking_n_ignore=1")  # fmt: skip
    write_run(Path("out/run_b"), small_table1(0.01, seed=2), model="FreedomIntelligence/HuatuoGPT-o1-8B",
              gen_kwargs=None, records=False)  # fmt: skip
    assert main(["out/run_a", "out/run_b", "--baseline", "HuatuoGPT-o1-8B", "--bootstrap", "500"]) == 0
    folders = list(Path("reports").iterdir())
    assert [f.name for f in folders] == ["m1-7B-23K_budget_2048_ignore_1__HuatuoGPT-o1-8B"]
    written = {p.name for p in folders[0].iterdir()}
    assert EXPECTED <= written
    if os.environ.get("CI") or _has_matplotlib():
        assert {"budget_scaling.png", "budget_scaling.svg"} <= written
    out = capsys.readouterr().out
    assert "Table 1: accuracy (%)" in out and "HuatuoGPT-o1-8B (baseline)" in out and "wrote" in out
    # the run named HuatuoGPT-o1-8B is the baseline (runs come before paper rows); the paper row is kept apart
    table = pd.read_csv(folders[0] / "table1.csv").set_index("model")
    assert table.loc["HuatuoGPT-o1-8B", "source"] == "run" and bool(table.loc["HuatuoGPT-o1-8B", "baseline"])
    assert table.loc["HuatuoGPT-o1-8B (paper)", "source"] == "paper"
    # --baseline paper:NAME picks the published row instead
    assert main(["out/run_a", "out/run_b", "--baseline", "paper:HuatuoGPT-o1-8B", "--name", "p", "-q"]) == 0
    table = pd.read_csv("reports/p/table1.csv").set_index("model")
    assert bool(table.loc["HuatuoGPT-o1-8B (paper)", "baseline"])


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "m1-report out/run_a out/run_b --baseline HuatuoGPT-o1-8B" in text


def test_python_dash_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "m1_reports", "--help"], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert result.returncode == 0 and "usage: m1-report" in result.stdout


def test_no_folder_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "give at least one" in capsys.readouterr().err


def test_list_references(capsys):
    assert main(["--list-references"]) == 0
    out = capsys.readouterr().out
    assert "HuatuoGPT-o1-72B" in out and "UltraMedical-70B-3" in out


LM_EVAL = Path(sys.executable).with_name("lm_eval")


@pytest.mark.skipif(not LM_EVAL.exists(), reason="the lm_eval command is not installed beside this Python")
def test_real_lm_eval_output(tmp_path):
    """lm-eval 0.4.13's own writer (dummy model): a group of two tasks, gen_kwargs given as a string."""
    data = tmp_path / "q.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q{i} <script>x</script>", "answer": "ABCD"[i % 4]}) + "\n" for i in range(6))
    )
    base = textwrap.dedent(
        f"""\
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{{{prompt}}}}"
        doc_to_target: answer
        generation_kwargs:
          until: []
          max_gen_toks: 8
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """
    )
    (tmp_path / "t1.yaml").write_text("task: rep_probe_one\n" + base)
    (tmp_path / "t2.yaml").write_text("task: rep_probe_two\n" + base)
    (tmp_path / "g.yaml").write_text(
        "group: rep_probe\ntask:\n  - rep_probe_one\n  - rep_probe_two\naggregate_metric_list:\n"
        "  - metric: exact_match\n    aggregation: mean\n    weight_by_size: false\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "M1_EVAL_DISABLE_HOOK": "1"}
    result = subprocess.run(
        [str(LM_EVAL), "--model", "dummy", "--model_args", "pretrained=org/Dummy-Model", "--tasks", "rep_probe",
         "--include_path", str(tmp_path), "--gen_kwargs", "max_tokens_thinking=64,thinking_n_ignore=1",
         "--output_path", str(tmp_path / "out"), "--log_samples"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert main([str(tmp_path / "out"), "--out", str(tmp_path / "rep"), "--reference", "none", "-q"]) == 0
    table = pd.read_csv(tmp_path / "rep" / "table1.csv")
    assert list(table["model"]) == ["Dummy-Model (budget 64, ignore 1)"]
    assert {"rep_probe_one", "rep_probe_two"} <= set(table.columns) and "rep_probe" not in table.columns
    run_tasks = pd.read_csv(tmp_path / "rep" / "run_tasks.csv")
    assert set(run_tasks["metric"]) == {"exact_match"} and set(run_tasks["samples_rows"]) == {6}
    board = json.loads((tmp_path / "rep" / "leaderboard.json").read_text())[0]
    assert board["lm_eval_version"] == "0.4.13" and board["gen_kwargs"]["max_tokens_thinking"] == 64
    assert "<script>x" not in (tmp_path / "rep" / "samples.html").read_text()
    # the protocol header, from lm-eval's own field names: gen_kwargs, chat_template (null without
    # --apply_chat_template), versions ("Yaml": not an m1 task), the lm-eval seeds
    protocol = pd.read_csv(tmp_path / "rep" / "protocol.csv").iloc[0]
    assert str(protocol["budget"]) == "64" and str(protocol["ignore"]) == "1"
    assert protocol["chat_template"].startswith("off") and "chat_template" in protocol["differs_from_paper"]
    assert protocol["scorer"] == "the task's own (exact_match)" and protocol["prompt"] == "the task's own"
    assert protocol["lm_eval_seeds"] == "0/1234/1234/1234" and pd.isna(protocol["count_notes"])
