"""Every number m1-report writes, checked against generated runs whose scores are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.columns import TABLE1_COLUMN_INFO
from tests.report_fixtures import TABLE1_SIZES, make_truth, small_table1, write_run

PAPER = pd.read_csv(Path(__file__).resolve().parents[1] / "m1_reports" / "data" / "paper_table1.csv").set_index("model")
Z = 1.959963984540054


def wilson(p: float, n: int) -> tuple[float, float]:
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    a_tasks = small_table1(0.04, seed=1, budget=1024, ignore=2)
    a_tasks["m1_hle"] = make_truth(30, 0.1, seed=7, budget=1024)
    a = write_run(
        out / "run_a",
        a_tasks,
        model="UCSC-VLAA/m1-7B-23K",
        gen_kwargs={"max_tokens_thinking": 1024, "thinking_n_ignore": 2},
        text_size=300,
    )
    b = write_run(
        out / "run_b",
        small_table1(0.04, accs=[0.55, 0.72, 0.7, 0.6, 0.45, 0.66, 0.5, 0.48, 0.15, 0.6], seed=2),
        model="Qwen/Qwen2.5-7B-Instruct",
        gen_kwargs="max_gen_toks=2048",
        records=False,
    )
    report = build_report(
        [out / "run_a", out / "run_b"],
        ReportOptions(baseline="HuatuoGPT-o1-8B", references=["HuatuoGPT-o1-8B", "UltraMedical-8B-3.1"], n_boot=2000),
    )
    target = out / "report"
    write_report(report, target)
    return a, b, report, target


def test_runs_are_named_from_model_and_budget(two_runs):
    _, _, report, _ = two_runs
    assert report.loaded.labels == ["m1-7B-23K (budget 1024, ignore 2)", "Qwen2.5-7B-Instruct"]


def test_table1_csv_matches_the_truth(two_runs):
    a, b, report, target = two_runs
    table = pd.read_csv(target / "table1.csv").set_index("model")
    assert list(table.index) == [*report.loaded.labels, "UltraMedical-8B-3.1", "HuatuoGPT-o1-8B"]  # paper order
    base = PAPER.loc["HuatuoGPT-o1-8B"]
    for label, truth in zip(report.loaded.labels, (a, b), strict=True):
        row = table.loc[label]
        for bench in TABLE1_COLUMN_INFO:
            t = truth.tasks[bench.task]
            assert row[bench.column] == pytest.approx(100 * t.acc, abs=1e-4)
            low, high = wilson(t.acc, t.n)
            assert row[f"{bench.column}_ci_low"] == pytest.approx(100 * low, abs=1e-4)
            assert row[f"{bench.column}_ci_high"] == pytest.approx(100 * high, abs=1e-4)
            assert row[f"{bench.column}_n"] == t.n
            assert row[f"{bench.column}_delta"] == pytest.approx(100 * t.acc - base[bench.column], abs=1e-4)
        avg = sum(truth.tasks[b_.task].acc for b_ in TABLE1_COLUMN_INFO) / 10
        assert row["Avg"] == pytest.approx(100 * avg, abs=1e-4)
        se = math.sqrt(sum(truth.tasks[b_.task].acc * (1 - truth.tasks[b_.task].acc) / truth.tasks[b_.task].n
                           for b_ in TABLE1_COLUMN_INFO)) / 10  # fmt: skip
        assert row["Avg_ci_low"] == pytest.approx(100 * (avg - Z * se), abs=1e-4)
        assert row["Avg_delta"] == pytest.approx(100 * avg - base["Avg"], abs=1e-4)
    # the extra task is an extra column, empty for the run without it
    assert table.loc[report.loaded.labels[0], "HLE"] == pytest.approx(100 * a.tasks["m1_hle"].acc, abs=1e-4)
    assert math.isnan(table.loc[report.loaded.labels[1], "HLE"])
    # published rows: the paper's figures, CIs from the benchmark sizes, baseline flagged with zero deltas
    for name in ("HuatuoGPT-o1-8B", "UltraMedical-8B-3.1"):
        row = table.loc[name]
        assert row["source"] == "paper"
        for bench in TABLE1_COLUMN_INFO:
            assert row[bench.column] == pytest.approx(PAPER.loc[name, bench.column], abs=1e-6)
            low, _ = wilson(PAPER.loc[name, bench.column] / 100, TABLE1_SIZES[bench.task])
            assert row[f"{bench.column}_ci_low"] == pytest.approx(100 * low, abs=1e-4)
        assert row["Avg"] == pytest.approx(PAPER.loc[name, "Avg"], abs=1e-6)
    assert bool(table.loc["HuatuoGPT-o1-8B", "baseline"])
    assert table.loc["HuatuoGPT-o1-8B", "MedQA_delta"] == 0
    # best per column: exactly the rows holding the column maximum
    for column in [*(b_.column for b_ in TABLE1_COLUMN_INFO), "Avg", "HLE"]:
        values = table[column].round(2)
        assert list(table[f"{column}_best"]) == list(values == values.max())


def test_markdown_and_latex_show_the_same_numbers(two_runs):
    a, _, report, target = two_runs
    markdown = (target / "table1.md").read_text()
    latex = (target / "table1.tex").read_text()
    label = report.loaded.labels[0]
    medqa = a.tasks["m1_medqa"]
    text = f"{100 * medqa.acc:.2f}"
    table_part = markdown[markdown.index("# Table 1") :]  # the protocol header comes first
    row = next(line for line in table_part.splitlines() if line.startswith(f"| {label}"))
    assert text in row
    assert f"{100 * medqa.acc - PAPER.loc['HuatuoGPT-o1-8B', 'MedQA']:+.2f}" in row
    low, high = wilson(medqa.acc, medqa.n)
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in row
    assert "HuatuoGPT-o1-8B †" in markdown and "arXiv:2504.00869v2" in markdown
    assert "\\begin{tabular}" in latex and "\\textbf{" in latex and "$^\\dag$" in latex
    tex_row = next(line for line in latex.splitlines() if line.startswith("m1-7B-23K"))
    assert text in tex_row and tex_row.endswith("\\\\")


def test_leaderboard_rows(two_runs):
    a, b, report, target = two_runs
    rows = json.loads((target / "leaderboard.json").read_text())
    assert [r["run"] for r in rows] == report.loaded.labels
    first = rows[0]
    assert first["model"] == "UCSC-VLAA/m1-7B-23K" and first["revision"] == "main"
    assert first["gen_kwargs"] == {"max_tokens_thinking": 1024, "thinking_n_ignore": 2}
    assert first["lm_eval_version"] == "0.4.13" and first["date"].startswith("2026-01-01")
    for task, truth in a.tasks.items():
        assert first["tasks"][task]["acc"] == pytest.approx(truth.acc)
        assert first["tasks"][task]["acc_stderr"] == pytest.approx(truth.stderr)
        assert first["tasks"][task]["n"] == truth.n
    assert first["n"] == sum(t.n for t in a.tasks.values())
    assert first["avg_table1"] == pytest.approx(sum(a.tasks[x.task].acc for x in TABLE1_COLUMN_INFO) / 10)
    assert rows[1]["gen_kwargs"] == {"max_gen_toks": 2048} and rows[1]["max_tokens_thinking"] is None
    csv = pd.read_csv(target / "leaderboard.csv")
    assert csv.loc[1, "m1_medqa_acc"] == pytest.approx(b.tasks["m1_medqa"].acc)
    assert csv.loc[1, "m1_medqa_n"] == b.tasks["m1_medqa"].n
    assert math.isnan(csv.loc[1, "m1_hle_acc"])


def test_scoring_shows_strict_and_no_answer(two_runs):
    a, _, report, target = two_runs
    scoring = pd.read_csv(target / "scoring.csv")
    label = report.loaded.labels[0]
    for task, truth in a.tasks.items():
        row = scoring[(scoring["run"] == label) & (scoring["task"] == task)].iloc[0]
        assert row["acc"] == pytest.approx(truth.acc)
        assert row["acc_strict"] == pytest.approx(truth.acc_strict)
        assert row["fuzzy_gain"] == pytest.approx(truth.acc - truth.acc_strict)
        assert row["no_answer"] == pytest.approx(truth.no_answer_rate)
    avg = scoring[(scoring["run"] == label) & (scoring["task"] == "Avg")].iloc[0]
    assert avg["acc_strict"] == pytest.approx(sum(a.tasks[x.task].acc_strict for x in TABLE1_COLUMN_INFO) / 10)


def test_budget_table_from_generation_records(two_runs):
    a, _, report, target = two_runs
    budget = pd.read_csv(target / "budget_scaling.csv")
    label, baseline_label = report.loaded.labels
    for task, truth in a.tasks.items():
        row = budget[(budget["run"] == label) & (budget["task"] == task)].iloc[0]
        assert row["budget_x"] == 1024 and row["ignore"] == 2
        assert row["thinking_tokens_mean"] == pytest.approx(sum(truth.thinking_tokens) / truth.n)
        assert row["budget_hit_share"] == pytest.approx(sum(truth.budget_hit) / truth.n)
        assert row["ignore_rounds_mean"] == pytest.approx(sum(truth.ignore_rounds) / truth.n)
        assert row["records"] == truth.n
    avg = budget[(budget["run"] == label) & (budget["task"] == "Avg")].iloc[0]
    tokens = [t for x in TABLE1_COLUMN_INFO for t in a.tasks[x.task].thinking_tokens]
    assert avg["thinking_tokens_mean"] == pytest.approx(sum(tokens) / len(tokens))
    # no records, no forcing: empty token columns
    other = budget[budget["run"] == baseline_label]
    assert other["thinking_tokens_mean"].isna().all() and other["budget_x"].isna().all()


def test_samples_frame_is_tidy(two_runs):
    a, b, report, _ = two_runs
    samples = report.loaded.samples
    assert len(samples) == sum(t.n for t in a.tasks.values()) + sum(t.n for t in b.tasks.values())
    part = samples[(samples["run"] == report.loaded.labels[0]) & (samples["task"] == "m1_nejm")]
    assert list(part["acc"]) == [float(x) for x in a.tasks["m1_nejm"].correct]
    assert list(part["thinking_tokens"]) == [float(x) for x in a.tasks["m1_nejm"].thinking_tokens]
    run_tasks = report.loaded.run_tasks
    assert len(run_tasks) == len(a.tasks) + len(b.tasks)
    assert "m1_table1" not in set(run_tasks["task"])  # groups are not tasks


def test_budget_sweep_plot_data(tmp_path):
    out = tmp_path / "out"
    for budget, acc in ((512, 0.4), (1024, 0.5), (2048, 0.6)):
        write_run(
            out,
            small_table1(0.01, accs=[acc] * 10, seed=budget, budget=budget),
            model="UCSC-VLAA/m1-7B-1K",
            date_id=f"2026-01-0{budget.bit_length() - 9}T00-00-00.000001",
            gen_kwargs=f"max_tokens_thinking={budget}",
            text_size=50,
        )
    report = build_report([out], ReportOptions(references=["none"], n_boot=500))
    assert report.loaded.labels == [f"m1-7B-1K (budget {b})" for b in (512, 1024, 2048)]
    avg = report.budget[report.budget["task"] == "Avg"]
    assert list(avg["budget_x"]) == [512, 1024, 2048]
    assert list(avg["series"].unique()) == ["m1-7B-1K"]
    # paired default: every later run against the first
    assert set(report.paired["run_b"]) == {"m1-7B-1K (budget 512)"}
