"""The frontier of a sweep (m1_reports.frontier): accuracy against the tokens generated per question, one curve per
strategy, the Pareto frontier; its figure first in index.html, frontier.png/.svg and frontier.csv; nothing of it
in a report of runs that are no sweep.

The runs are hand-built lm-eval output folders (tests/report_fixtures.py) of one task with four documents, whose
records' thinking tokens are chosen so that every number below is computed by hand (the fixture's records have 12
answer tokens each)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.columns import AVG
from m1_reports.frontier import COLUMNS, STRATEGY_BUDGET, STRATEGY_MAJORITY, STRATEGY_WAIT, mark_frontier, pareto_mask
from m1_reports.render_figures import frontier_figure
from tests.report_fixtures import TaskTruth, small_table1, write_run

ANSWER_TOKENS = 12  # every record of tests/report_fixtures.py
MODEL = "UCSC-VLAA/m1-7B-23K"


def truth(correct: list[int], thinking: list[int]) -> TaskTruth:
    return TaskTruth(correct, list(correct), [0] * len(correct), thinking, [0] * len(correct), [0] * len(correct))


# (budget, ignore) -> (which of the four documents are right, thinking tokens of each)
SWEEP = {
    (256, 0): ([1, 0, 0, 0], [10, 10, 10, 10]),  # 25 %, 22 tokens: the fewest tokens, on the frontier
    (512, 0): ([1, 1, 0, 0], [20, 30, 30, 40]),  # 50 %, 42: on it
    (512, 1): ([1, 1, 0, 0], [50, 50, 50, 50]),  # 50 %, 62: beaten by (512, 0), as right with fewer tokens
    (1024, 0): ([1, 1, 1, 0], [90, 90, 90, 90]),  # 75 %, 102: on it
    (1024, 1): ([1, 0, 1, 1], [80, 100, 90, 90]),  # 75 %, 102: the same point, a tie: on it too
}
ON_FRONTIER = {(256, 0): True, (512, 0): True, (512, 1): False, (1024, 0): True, (1024, 1): True}


def write_sweep(out: Path, records: bool = True) -> list[Path]:
    folders = []
    for number, ((budget, ignore), (correct, thinking)) in enumerate(SWEEP.items()):
        folder = out / f"budget_{budget}_ignore_{ignore}"
        write_run(
            folder,
            {"m1_medqa": truth(correct, thinking)},
            model=MODEL,
            gen_kwargs={"max_tokens_thinking": budget, "thinking_n_ignore": ignore},
            date_id=f"2026-01-0{number + 1}T00-00-00.000001",
            records=records,
        )
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier")
    folders = write_sweep(out)
    report = build_report(folders, ReportOptions(n_boot=200))
    target = out / "report"
    write_report(report, target)
    return report, target


def label(budget: int, ignore: int) -> str:
    return f"m1-7B-23K (budget {budget}" + (f", ignore {ignore})" if ignore else ")")


# ------------------------------------------------------------------------------------------------ the Pareto set


def test_pareto_set_of_a_hand_computed_example():
    points = {
        "a": (100, 0.50),  # on: nothing has fewer tokens at 50 % or more
        "b": (200, 0.60),  # on
        "c": (200, 0.55),  # beaten by b: the same tokens, less accurate
        "d": (300, 0.60),  # beaten by b: as accurate, more tokens
        "e": (300, 0.70),  # on
        "f": (300, 0.70),  # e's twin: a tie beats neither, both on
        "g": (50, 0.40),  # on: the fewest tokens
        "h": (400, 0.65),  # beaten by e and f
        "i": (math.nan, 0.90),  # no tokens: on none, and beats none
    }
    mask = pareto_mask([t for t, _ in points.values()], [a for _, a in points.values()])
    assert dict(zip(points, mask.tolist(), strict=True)) == {
        "a": True, "b": True, "c": False, "d": False, "e": True, "f": True, "g": True, "h": False, "i": False,
    }  # fmt: skip
    assert pareto_mask([], []).tolist() == []
    assert pareto_mask([5.0], [0.1]).tolist() == [True]


def test_the_sweep_points_and_their_frontier(sweep):
    report, _ = sweep
    frame = report.frontier
    assert list(frame.columns) == COLUMNS
    assert list(dict.fromkeys(frame["task"])) == [AVG, "m1_medqa"]  # the Table 1 average first
    task = frame[frame["task"] == "m1_medqa"]
    # the budget curve (ignore 0 by budget), then a Wait-rounds curve per budget with rounds (by rounds)
    assert [(r.strategy, r.curve, r.budget, r.ignore) for r in task.itertuples()] == [
        (STRATEGY_BUDGET, "budget (no Wait rounds)", 256, 0),
        (STRATEGY_BUDGET, "budget (no Wait rounds)", 512, 0),
        (STRATEGY_BUDGET, "budget (no Wait rounds)", 1024, 0),
        (STRATEGY_WAIT, "Wait rounds at budget 512", 512, 0),
        (STRATEGY_WAIT, "Wait rounds at budget 512", 512, 1),
        (STRATEGY_WAIT, "Wait rounds at budget 1024", 1024, 0),
        (STRATEGY_WAIT, "Wait rounds at budget 1024", 1024, 1),
    ]
    for r in task.itertuples():
        correct, thinking = SWEEP[(r.budget, r.ignore)]
        assert r.run == label(r.budget, r.ignore)
        assert r.k == 1 and r.n == 4 and r.model == "m1-7B-23K"
        assert r.accuracy == pytest.approx(sum(correct) / 4)
        assert r.mean_tokens_per_question == pytest.approx(sum(thinking) / 4 + ANSWER_TOKENS)
        assert r.samples_per_question == 1 and r.mean_tokens_per_sample == pytest.approx(r.mean_tokens_per_question)
        assert r.ci_low < r.accuracy < r.ci_high
        assert r.on_frontier == ON_FRONTIER[(r.budget, r.ignore)], r.run
    # the Avg of one benchmark is that benchmark, marked as over 1 of 10
    avg = frame[frame["task"] == AVG]
    assert list(avg["on_frontier"]) == list(task["on_frontier"])
    assert list(avg["mean_tokens_per_question"]) == pytest.approx(list(task["mean_tokens_per_question"]))
    assert set(avg["avg_benchmarks"]) == {1}


def test_tokens_per_question_count_every_sample_of_a_question(tmp_path):
    """Thinking + answer tokens of the records, summed over a question's samples (lm-eval's repeats write several
    records of one document), then the mean over the questions."""
    folders = write_sweep(tmp_path)
    records = next(folders[0].glob("*/m1_generations_m1_medqa_*.jsonl"))
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    # document 0 has two more samples: 100 + 5 and 60 + 7 tokens
    repeats = [{**rows[0], "thinking_tokens": 100, "answer_tokens": 5}, {**rows[0], "thinking_tokens": 60,
               "answer_tokens": 7}]  # fmt: skip
    records.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *repeats]))
    report = build_report(folders, ReportOptions(n_boot=200))
    row = report.frontier[(report.frontier["task"] == "m1_medqa") & (report.frontier["run"] == label(256, 0))].iloc[0]
    per_question = [10 + 12 + 100 + 5 + 60 + 7, 22, 22, 22]
    assert row.mean_tokens_per_question == pytest.approx(sum(per_question) / 4)  # 65
    assert row.mean_tokens_per_sample == pytest.approx(sum(per_question) / 6)
    assert row.samples_per_question == pytest.approx(6 / 4)
    # the samples frame: one row per document, its first record's columns, every record's tokens
    samples = report.loaded.samples
    first = samples[(samples["run"] == label(256, 0)) & (samples["doc_id"] == 0)].iloc[0]
    assert (first.thinking_tokens, first.answer_tokens) == (10, 12)
    assert (first.generated_tokens, first.generations) == (194, 3)
    # the budget table keeps the first record of each document
    budget = report.budget
    row = budget[(budget["run"] == label(256, 0)) & (budget["task"] == "m1_medqa")].iloc[0]
    assert row.thinking_tokens_mean == 10


def test_the_avg_pools_the_questions_of_its_benchmarks(tmp_path):
    folders = []
    for number, budget in enumerate((128, 256)):
        tasks = small_table1(0.01, seed=number, budget=budget)
        folder = tmp_path / f"budget_{budget}_ignore_0"
        write_run(folder, tasks, model=MODEL, gen_kwargs={"max_tokens_thinking": budget},
                  date_id=f"2026-01-0{number + 1}T00-00-00.000001")  # fmt: skip
        folders.append((folder, tasks))
    report = build_report([f for f, _ in folders], ReportOptions(n_boot=200))
    frame = report.frontier
    for (_, tasks), budget in zip(folders, (128, 256), strict=True):
        avg = frame[(frame["task"] == AVG) & (frame["budget"] == budget)].iloc[0]
        thinking = [t for truth in tasks.values() for t in truth.thinking_tokens]
        assert avg.mean_tokens_per_question == pytest.approx(sum(thinking) / len(thinking) + ANSWER_TOKENS)
        assert avg.accuracy == pytest.approx(sum(truth.acc for truth in tasks.values()) / 10)
        assert avg.n == sum(truth.n for truth in tasks.values()) and avg.avg_benchmarks == 10
        assert avg.accuracy == pytest.approx(report.table1.at("value", avg.run, AVG))
        assert (avg.ci_low, avg.ci_high) == pytest.approx(
            (report.table1.at("low", avg.run, AVG), report.table1.at("high", avg.run, AVG))
        )
    assert len(frame[frame["task"] == AVG]) == 2 and len(frame) == 2 * 11


# ---------------------------------------------------------------------------------------------------- the files


def test_frontier_csv(sweep):
    report, target = sweep
    frame = pd.read_csv(target / "frontier.csv")
    required = ["task", "strategy", "budget", "ignore", "k", "mean_tokens_per_question", "accuracy", "ci_low",
                "ci_high", "on_frontier"]  # fmt: skip
    assert set(required) <= set(frame.columns) and list(frame.columns) == COLUMNS
    assert len(frame) == 2 * 7  # (Avg, MedQA) x (3 budget points + 2 x 2 Wait-rounds points)
    task = frame[frame["task"] == "m1_medqa"]
    on = {(int(r.budget), int(r.ignore)) for r in task.itertuples() if r.on_frontier}
    assert on == {key for key, value in ON_FRONTIER.items() if value}
    assert set(frame["strategy"]) == {STRATEGY_BUDGET, STRATEGY_WAIT} and set(frame["k"]) == {1}
    tokens = report.frontier["mean_tokens_per_question"].tolist()
    assert frame["mean_tokens_per_question"].tolist() == pytest.approx(tokens)
    assert "frontier.csv" in (target / ".m1-report").read_text().splitlines()


def test_the_frontier_figure_is_first_in_index_html(sweep):
    _, target = sweep
    index = (target / "index.html").read_text(encoding="utf-8")
    targets = re.findall(r'class="m1-figure" data-target="([^"]+)"', index)
    assert targets[:2] == ["figure-frontier", "figure-headline"]
    assert index.index('id="figure-frontier"') < index.index('id="figure-headline"') < index.index('id="table1"')
    spec = re.search(r'data-target="figure-frontier">(.*?)</script>', index, re.S).group(1)
    figure = json.loads(spec)
    assert figure["layout"]["title"]["text"] == "Frontier: Avg over the Table 1 benchmarks"
    buttons = figure["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == ["Avg", "MedQA"]  # the task selector, Avg first
    shown = [trace for trace in figure["data"] if trace["visible"]]
    assert [t["name"] for t in shown] == ["budget", "Wait rounds", "Wait rounds", "Pareto frontier"]
    assert [t["showlegend"] for t in shown[:3]] == [True, True, False]
    budget_curve, frontier = shown[0], shown[-1]
    assert budget_curve["x"] == pytest.approx([22, 42, 102]) and budget_curve["y"] == pytest.approx([25, 50, 75])
    assert frontier["x"] == pytest.approx([22, 42, 102, 102]) and frontier["y"] == pytest.approx([25, 50, 75, 75])
    hover = budget_curve["hovertemplate"]
    assert "accuracy" in hover and "tokens per question" in hover
    setting = budget_curve["customdata"][0]
    assert setting[0] == label(256, 0) and setting[1] == "budget: budget 256" and setting[2].startswith("[")
    assert "on the Pareto frontier" in setting[5]
    assert "frontier.csv" in index
    assert (target / "frontier.png").stat().st_size > 10_000 and (target / "frontier.svg").exists()


def test_a_future_strategy_is_one_more_row(sweep):
    """maj@k: a row with its strategy, k and k x the tokens per sample; the frontier is marked over every row."""
    report, _ = sweep
    frame = report.frontier
    base = frame[(frame["task"] == "m1_medqa") & (frame["run"] == label(512, 0))].iloc[0]
    majority = {**base.to_dict(), "strategy": STRATEGY_MAJORITY, "curve": "maj@k at budget 512", "k": 4,
                "mean_tokens_per_question": 4 * base.mean_tokens_per_sample, "accuracy": 0.80}  # fmt: skip
    marked = mark_frontier(pd.concat([frame, pd.DataFrame([majority])], ignore_index=True))
    task = marked[marked["task"] == "m1_medqa"]
    # 80 % with 4 x 42 = 168 tokens: no point is as accurate, and it has more tokens than any: it beats none
    assert task[task["strategy"] == STRATEGY_MAJORITY]["on_frontier"].tolist() == [True]
    assert (
        task[task["strategy"] != STRATEGY_MAJORITY]["on_frontier"].tolist()
        == frame[frame["task"] == "m1_medqa"]["on_frontier"].tolist()
    )
    figure = frontier_figure(marked)
    assert STRATEGY_MAJORITY in {trace.name for trace in figure.data}


def test_the_frontier_is_per_benchmark_column_not_per_task(sweep):
    """Two tasks of one column (m1_medqa and m1_medqa_k4 of other runs; tests/test_report_repeats.py has the whole
    report) share one Pareto frontier: a better point of the other task takes a point off it."""
    report, _ = sweep
    frame = report.frontier[report.frontier["task"] == "m1_medqa"]
    other = {**frame.iloc[0].to_dict(), "task": "m1_medqa_k4", "run": "other", "mean_tokens_per_question": 42.0,
             "accuracy": 0.9}  # fmt: skip
    marked = mark_frontier(pd.concat([frame, pd.DataFrame([other])], ignore_index=True))
    assert set(marked["column"]) == {"MedQA"}
    on = marked[marked["on_frontier"]]
    assert sorted(zip(on["task"], on["mean_tokens_per_question"], strict=True)) == [("m1_medqa", 22),
                                                                                    ("m1_medqa_k4", 42)]  # fmt: skip
    assert mark_frontier(frame)["on_frontier"].tolist() == frame["on_frontier"].tolist()


# ------------------------------------------------------------------------------------------------- no sweep, none


def assert_no_frontier(report, target: Path) -> None:
    assert report.frontier.empty and list(report.frontier.columns) == COLUMNS
    index = (target / "index.html").read_text(encoding="utf-8")
    assert "figure-frontier" not in index and "Pareto" not in index and "No frontier" not in index
    assert not any((target / name).exists() for name in ("frontier.csv", "frontier.png", "frontier.svg"))


def test_no_frontier_for_runs_of_different_models(tmp_path):
    write_run(tmp_path / "a", small_table1(0.01, seed=1, budget=512), gen_kwargs={"max_tokens_thinking": 512})
    write_run(tmp_path / "b", small_table1(0.01, seed=2, budget=1024), model="org/model-b",
              gen_kwargs={"max_tokens_thinking": 1024})  # fmt: skip
    report = build_report([tmp_path / "a", tmp_path / "b"], ReportOptions(n_boot=200))
    write_report(report, tmp_path / "report")
    assert_no_frontier(report, tmp_path / "report")


def test_no_frontier_for_one_setting(tmp_path):
    write_run(tmp_path / "a", small_table1(0.01, seed=1, budget=512), gen_kwargs={"max_tokens_thinking": 512})
    report = build_report([tmp_path / "a"], ReportOptions(n_boot=200))
    write_report(report, tmp_path / "report")
    assert_no_frontier(report, tmp_path / "report")


def test_a_sweep_beside_a_baseline_keeps_the_baseline_off_the_frontier(tmp_path):
    folders = write_sweep(tmp_path)
    write_run(tmp_path / "baseline", {"m1_medqa": truth([1, 1, 1, 1], [5, 5, 5, 5])}, model="org/baseline")
    report = build_report([*folders, tmp_path / "baseline"], ReportOptions(n_boot=200))
    assert set(report.frontier["run"]) == {label(*key) for key in SWEEP}


def test_a_sweep_without_generation_records_says_why_it_has_no_frontier(tmp_path):
    report = build_report(write_sweep(tmp_path, records=False), ReportOptions(n_boot=200))
    write_report(report, tmp_path / "report")
    assert report.frontier.empty
    index = html.unescape((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    assert "No frontier: the sweep's runs have no generation records" in index and "figure-frontier" not in index
