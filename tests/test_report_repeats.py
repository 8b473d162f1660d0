"""Runs of K samples per question (lm-eval's ``repeats``, the ``<task>_k<K>`` tasks of m1_tasks/repeats.py) in the
report: their tasks fill their benchmarks' columns, the protocol states K, a sweep's frontier gains ``maj@k`` rows,
the parallel-samples table (``parallel_samples.csv`` and its section of index.html), the question browser's
"sample 1 of K"; a report without such a run is unchanged.

The runs are lm-eval output folders written as tests/report_fixtures.py writes them, then made K-sample runs as
lm-eval 0.4.13 and the m1 models write those (:func:`write_repeats_run`): the results hold ``acc`` (the mean over the
K samples) and ``maj@k``, ``pass@k``, ``avg@k`` with their ``_stderr`` for every k <= K and ``configs[task].repeats``;
each samples row holds the K responses (``resps`` and ``filtered_resps`` ``[[r_1, ..., r_K]]``) and every metric;
the generation records are K per document (``repeat`` 0..K-1).  Every number below is computed by hand from the
answers' letters."""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.columns import AVG, TABLE1_COLUMNS, base_task, benchmark, is_cot, order_tasks, repeats_of
from m1_reports.frontier import COLUMNS, STRATEGY_BUDGET, STRATEGY_MAJORITY, pareto_mask
from m1_reports.protocol import FIELDS, INFO, WARN
from m1_tasks.benchmarks import split_repeats, split_variant
from m1_tasks.repeats import majority_vote, pass_at_k
from tests.report_fixtures import LETTERS, TaskTruth, _response, small_table1, write_run

ANSWER_TOKENS = 12  # every record of tests/report_fixtures.py
MODEL = "UCSC-VLAA/m1-7B-23K"


# ------------------------------------------------------------------------------------------------ the fixture


def question_metrics(letters: list[str], target: str) -> dict[str, float]:
    """Every metric of one question's K answers (``""``: no answer, which does not vote), as m1_tasks/repeats.py
    defines them."""
    k_all = len(letters)
    correct = [letter == target for letter in letters]
    c = sum(correct)
    metrics = {"acc": c / k_all, "acc_strict": c / k_all, "no_answer": sum(not x for x in letters) / k_all}
    for k in range(1, k_all + 1):
        metrics[f"maj@{k}"] = float(majority_vote(letters[:k]) == target)
    for k in range(1, k_all + 1):
        metrics[f"pass@{k}"] = pass_at_k(k_all, c, k)
    for k in range(1, k_all + 1):
        metrics[f"avg@{k}"] = sum(correct[:k]) / k
    return metrics


def write_repeats_run(
    out: Path,
    tasks: dict[str, tuple[list[list[str]], list[list[int]]]],
    *,
    gen_kwargs: dict[str, object] | None = None,
    date_id: str = "2026-01-01T00-00-00.000001",
    model: str = MODEL,
    plain: dict[str, TaskTruth] | None = None,
) -> Path:
    """A run of the K-sample tasks ``tasks``: task (``m1_medqa_k4``) -> (the K answer letters of each document,
    ``""`` for no answer; the K samples' thinking tokens of each document); ``plain``: one-sample tasks beside them.
    Document i's answer is ``LETTERS[i % 4]``, as in tests/report_fixtures.py."""
    gen_kwargs = {"temperature": 0.6, **(gen_kwargs or {})}
    truths = {}
    for task, (answers, thinking) in tasks.items():
        first = [letters[0] for letters in answers]
        correct = [int(letter == LETTERS[i % 4]) for i, letter in enumerate(first)]
        truths[task] = TaskTruth(correct, correct, [int(not x) for x in first], [t[0] for t in thinking],
                                 [0] * len(first), [0] * len(first))  # fmt: skip
    run = write_run(out, {**truths, **(plain or {})}, model=model, gen_kwargs=gen_kwargs, date_id=date_id)
    results = json.loads(run.results.read_text(encoding="utf-8"))
    forced = "max_tokens_thinking" in gen_kwargs
    for task, (answers, thinking) in tasks.items():
        k_all = len(answers[0])
        per_question = [question_metrics(letters, LETTERS[i % 4]) for i, letters in enumerate(answers)]
        entry = results["results"][task]
        for name in per_question[0]:
            values = [m[name] for m in per_question]
            entry[f"{name},none"] = statistics.fmean(values)
            entry[f"{name}_stderr,none"] = statistics.stdev(values) / math.sqrt(len(values))
        config = results["configs"][task]
        config["repeats"] = k_all
        config["filter_list"] = [{"name": "none", "filter": []}]
        config["metric_list"] = [{"metric": name, "aggregation": "mean", "higher_is_better": name != "no_answer"}
                                 for name in per_question[0]]  # fmt: skip
        samples = run.folder / f"samples_{task}_{date_id}.jsonl"
        rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
        records_path = run.folder / f"m1_generations_{task}_{date_id}.jsonl"
        first_records = [json.loads(line) for line in records_path.read_text(encoding="utf-8").splitlines()]
        records = []
        for row, letters, tokens, metrics, first in zip(rows, answers, thinking, per_question, first_records,
                                                         strict=True):  # fmt: skip
            texts = [_response(letter, row["doc_id"], 200, forced, bool(letter)) for letter in letters]
            row["resps"] = [[text for text, _, _ in texts]]
            row["filtered_resps"] = [[text for text, _, _ in texts]]
            row["metrics"] = list(metrics)
            row.update(metrics)
            for repeat, ((_, think, answer), count) in enumerate(zip(texts, tokens, strict=True)):
                records.append({**first, "repeat": repeat, "thinking_tokens": count, "answer_tokens": ANSWER_TOKENS,
                                "thinking_text": think, "answer_text": answer})  # fmt: skip
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        records_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    run.results.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return run.folder


# The hand-computed sweep: m1_medqa with K = 4 samples at budgets 256 and 512.  Document i's answer is
# "ABCD"[i]; each row is a document's four answers, then the samples' thinking tokens.
SWEEP = {
    256: (
        [["A", "A", "B", "A"],  # 3 of 4; maj@1..4 right (A; A, A; A 2 B 1; A 3)
         ["C", "B", "B", "C"],  # 2 of 4; maj@1 C wrong, @2 C-B tie -> C wrong, @3 B right, @4 C-B tie -> C wrong
         ["C", "C", "C", "C"],  # 4 of 4
         ["A", "A", "", "A"]],  # 0 of 4, one unanswered
        [[10, 20, 30, 40]] * 4,  # a sample: 25 + 12 = 37 tokens
    ),
    512: (
        [["A", "A", "A", "A"],  # 4 of 4
         ["B", "B", "C", "B"],  # 3 of 4
         ["C", "D", "C", "C"],  # 3 of 4; maj@2 C-D tie -> C right
         ["B", "D", "D", "D"]],  # 3 of 4; maj@1 B wrong, @2 B-D tie -> B wrong, @3 and @4 D right
        [[30, 30, 30, 30]] * 4,  # a sample: 42 tokens
    ),
}
ACC = {256: 9 / 16, 512: 13 / 16}
MAJ = {256: [0.5, 0.5, 0.75, 0.5], 512: [0.75, 0.75, 1.0, 1.0]}
PER_SAMPLE = {256: 25 + ANSWER_TOKENS, 512: 30 + ANSWER_TOKENS}


def write_sweep(out: Path, extra: dict[str, TaskTruth] | None = None) -> list[Path]:
    return [
        write_repeats_run(out / f"budget_{budget}_ignore_0", {"m1_medqa_k4": SWEEP[budget]},
                          gen_kwargs={"max_tokens_thinking": budget}, date_id=f"2026-01-0{i + 1}T00-00-00.000001",
                          plain=extra)  # fmt: skip
        for i, budget in enumerate(SWEEP)
    ]


def label(budget: int) -> str:
    return f"m1-7B-23K (budget {budget}, 4 samples)"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("repeats")
    report = build_report(write_sweep(out), ReportOptions(n_boot=200))
    target = out / "report"
    write_report(report, target)
    return report, target


def full_table1_run(out: Path, k: int = 3, **kwargs) -> Path:
    """A K-sample run of the ten Table 1 benchmarks (``<task>_k<K>``), 20 documents each, as m1-sweep --repeats
    writes it (the group m1_table1_k<K> too)."""
    tasks = {}
    for number, (task, truth) in enumerate(small_table1(0.001, seed=3).items()):
        letters = [[LETTERS[(i + (s + number) % 3 // 2) % 4] for s in range(k)] for i in range(truth.n)]
        tasks[f"{task}_k{k}"] = (letters, [[5 * (s + 1) for s in range(k)] for _ in range(truth.n)])
    folder = write_repeats_run(out, tasks, **kwargs)
    results_path = next(folder.glob("results_*.json"))
    results = json.loads(results_path.read_text(encoding="utf-8"))
    results["group_subtasks"] = {f"m1_table1_k{k}": list(tasks)}
    results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------- names and columns


def test_the_name_rule_strips_k_from_the_suites_names_only():
    assert split_repeats("m1_medqa_k8") == ("m1_medqa", 8)
    assert split_repeats("m1_medqa_cot_k8") == ("m1_medqa_cot", 8)
    assert split_repeats("m1_table1_k16") == ("m1_table1", 16)
    for name in ("m1_medqa", "my_task_k8", "m1_medqa_k08", "m1_medqa_k", "m1_medqa_k8_k8", "m1_medqa_kx"):
        assert split_repeats(name) == (name, None)
    assert split_variant("m1_medqa_k8") == ("m1_medqa", "plain")
    assert split_variant("m1_medqa_cot_k8") == ("m1_medqa", "cot")
    assert split_variant("m1_table1_cot_k8") == ("m1_table1", "cot")
    for task, column, label, cot in (
        ("m1_medqa_k8", "MedQA", "MedQA", False),
        ("m1_medqa_cot_k8", "MedQA", "MedQA (CoT)", True),
        ("m1_nejm_k4", "NEJM", "NEJM", False),
        ("m1_hle_k8", "HLE", "HLE", False),
    ):
        assert (benchmark(task).column, benchmark(task).label, is_cot(task)) == (column, label, cot), task
    assert base_task("m1_medqa_cot_k8") == "m1_medqa" and repeats_of("m1_medqa_cot_k8") == 8
    assert benchmark("my_task_k8").column == "my_task_k8" and repeats_of("my_task_k8") is None
    assert order_tasks(["m1_medqa_cot_k8", "m1_medqa_k8", "m1_medqa", "m1_medmcqa_k8", "m1_medqa_cot", "x"]) == [
        "m1_medmcqa_k8", "m1_medqa", "m1_medqa_cot", "m1_medqa_k8", "m1_medqa_cot_k8", "x",
    ]  # fmt: skip


def test_a_k_sample_run_fills_table1s_columns_with_acc(tmp_path):
    folder = full_table1_run(tmp_path / "run", gen_kwargs={"max_tokens_thinking": 512})
    report = build_report([folder], ReportOptions(n_boot=200))
    run = "m1-7B-23K (budget 512, 3 samples)"
    assert report.loaded.labels == [run]
    table = report.table1
    assert table.columns == [*TABLE1_COLUMNS, AVG]  # no column of its own: every _k3 task is its benchmark's
    results = json.loads(next(folder.glob("results_*.json")).read_text(encoding="utf-8"))["results"]
    assert len(report.loaded.run_tasks) == 10
    for task in report.loaded.run_tasks["task"]:
        column = benchmark(task).column
        assert column in TABLE1_COLUMNS and task == f"{base_task(task)}_k3"
        # acc, the mean over the K samples (two of each document's three are right), not maj@k (all right)
        assert table.at("value", run, column) == pytest.approx(results[task]["acc,none"]) == pytest.approx(2 / 3)
        assert results[task]["maj@3,none"] == 1
    assert table.at("value", run, AVG) == pytest.approx(statistics.fmean(r["acc,none"] for r in results.values()))
    assert not table.is_partial_avg(run)
    # the group m1_table1_k3 lists the ten: no benchmark is missing (no n = 0 count note)
    assert all(note.n > 0 for note in report.counts)


def test_a_k_sample_task_beside_its_one_sample_task_gets_a_column_of_its_own(tmp_path):
    plain = {"m1_medqa": TaskTruth([1, 0, 1, 0], [1, 0, 1, 0], [0] * 4, [5] * 4, [0] * 4, [0] * 4)}
    folder = write_repeats_run(tmp_path / "run", {"m1_medqa_k4": SWEEP[512]}, plain=plain)
    report = build_report([folder], ReportOptions(n_boot=200))
    tasks = report.loaded.run_tasks.set_index("task")
    assert tasks.loc["m1_medqa", "column"] == "MedQA"
    assert tasks.loc["m1_medqa_k4", "column"] == tasks.loc["m1_medqa_k4", "label"] == "MedQA (4 samples)"
    assert report.table1.columns[-1] == "MedQA (4 samples)"
    assert report.table1.at("value", report.loaded.labels[0], "MedQA (4 samples)") == pytest.approx(ACC[512])


# ---------------------------------------------------------------------------------------------------- protocol


def test_the_protocol_states_k_and_that_it_was_sampled(sweep):
    report, target = sweep
    header = report.protocol
    assert ("samples", "samples per question") in header.fields
    keys = [key for key, _ in header.fields]
    assert keys.index("samples") == keys.index("temperature") + 1
    (row,) = header.grouped_rows()  # one sweep: one row
    assert row.cells["samples"] == "4" and "samples" in row.flagged
    groups = [g for g in header.deviation_groups() if g.field == "samples"]
    assert len(groups) == 1 and groups[0].level == WARN and len(groups[0].runs) == 2  # said once, for both runs
    assert groups[0].message.startswith("4 samples per question") and "instead of the paper's one answer" in (
        groups[0].message
    )
    assert [g.field for g in header.deviation_groups()].count("temperature") == 1  # sampled: its own deviation
    protocol_md = (target / "protocol.md").read_text(encoding="utf-8")
    assert "samples per question" in protocol_md and "4 samples per question (lm-eval repeats" in protocol_md
    csv = pd.read_csv(target / "protocol.csv")
    assert list(csv["samples"]) == [4, 4] and all("samples" in d for d in csv["differs_from_paper"])
    index = html.unescape((target / "index.html").read_text(encoding="utf-8"))
    assert index.count("4 samples per question (lm-eval repeats") == 2  # the summary line and the protocol section


def test_greedy_repeats_are_a_note(tmp_path):
    folder = write_repeats_run(tmp_path / "run", {"m1_medqa_k4": SWEEP[256]}, gen_kwargs={"temperature": 0})
    report = build_report([folder], ReportOptions(n_boot=200))
    (group,) = [g for g in report.protocol.deviation_groups() if g.field == "samples"]
    assert group.level == INFO and group.message.endswith("greedy, the samples are one answer")


def test_a_one_sample_run_beside_a_k_sample_run_says_1(tmp_path):
    write_run(tmp_path / "plain", {"m1_medqa": TaskTruth([1, 0, 1, 0], [1, 0, 1, 0], [0] * 4, [5] * 4, [0] * 4,
              [0] * 4)}, model="org/other")  # fmt: skip
    folder = write_repeats_run(tmp_path / "k", {"m1_medqa_k4": SWEEP[256]})
    report = build_report([tmp_path / "plain", folder], ReportOptions(n_boot=200))
    cells = {row["run"]: row["cells"]["samples"] for row in report.protocol.rows()}
    assert cells == {"other": "1", "m1-7B-23K (4 samples)": "4"}
    assert "samples" in [d.field for d in report.protocol.differences]


# ---------------------------------------------------------------------------------------------------- frontier


def test_the_frontier_has_a_maj_at_k_curve_per_setting(sweep):
    report, _ = sweep
    frame = report.frontier
    assert list(frame.columns) == COLUMNS
    task = frame[frame["task"] == "m1_medqa_k4"]
    budget = task[task["strategy"] == STRATEGY_BUDGET]
    # a K-sample run's acc (the mean over its samples) is one sample's accuracy, at one sample's tokens
    assert list(budget["run"]) == [label(256), label(512)] and set(budget["k"]) == {1}
    assert list(budget["accuracy"]) == pytest.approx([ACC[256], ACC[512]])
    assert list(budget["mean_tokens_per_question"]) == pytest.approx([PER_SAMPLE[256], PER_SAMPLE[512]])
    assert set(budget["samples_per_question"]) == {4}
    majority = task[task["strategy"] == STRATEGY_MAJORITY]
    for budget_value in SWEEP:
        curve = majority[majority["run"] == label(budget_value)]
        assert set(curve["curve"]) == {f"maj@k at budget {budget_value}"}
        assert list(curve["k"]) == [1, 2, 3, 4]
        assert list(curve["accuracy"]) == pytest.approx(MAJ[budget_value])  # the results' maj@k
        assert list(curve["mean_tokens_per_question"]) == pytest.approx([k * PER_SAMPLE[budget_value] for k in
                                                                          (1, 2, 3, 4)])  # fmt: skip
        assert list(curve["mean_tokens_per_sample"]) == pytest.approx([PER_SAMPLE[budget_value]] * 4)
        assert (curve["n"] == 4).all() and (curve["ci_low"] <= curve["accuracy"]).all()
        assert (curve["accuracy"] <= curve["ci_high"]).all()


def test_the_pareto_frontier_is_over_every_row(sweep):
    report, _ = sweep
    task = report.frontier[report.frontier["task"] == "m1_medqa_k4"]
    assert task["on_frontier"].tolist() == pareto_mask(task["mean_tokens_per_question"], task["accuracy"]).tolist()
    on = {(r.strategy, r.run, int(r.k)) for r in task.itertuples() if r.on_frontier}
    # 256: 56 % at 37 tokens; 512: 81 % at 42; maj@3 at 512: 100 % at 126.  maj@3 at 256 (75 % at 111) is beaten
    # by a budget row (512: more accurate, fewer tokens); maj@4 at 512 by maj@3 (as accurate, fewer tokens).
    assert on == {(STRATEGY_BUDGET, label(256), 1), (STRATEGY_BUDGET, label(512), 1),
                  (STRATEGY_MAJORITY, label(512), 3)}  # fmt: skip


def test_the_avg_has_maj_at_k_where_every_benchmark_of_it_does(tmp_path):
    # the Avg of one benchmark (1 of 10): MedQA's own maj@k
    report = build_report(write_sweep(tmp_path / "one"), ReportOptions(n_boot=200))
    avg = report.frontier[(report.frontier["task"] == AVG) & (report.frontier["strategy"] == STRATEGY_MAJORITY)]
    assert list(avg[avg["run"] == label(512)]["accuracy"]) == pytest.approx(MAJ[512])
    assert set(avg["avg_benchmarks"]) == {1}
    # beside a one-sample GPQA, the Avg (2 of 10) has no maj@k: GPQA has none; its budget rows stay
    gpqa = {"m1_gpqa_med": TaskTruth([1, 0, 1, 1], [1, 0, 1, 1], [0] * 4, [5] * 4, [0] * 4, [0] * 4)}
    report = build_report(write_sweep(tmp_path / "two", extra=gpqa), ReportOptions(n_boot=200))
    avg = report.frontier[report.frontier["task"] == AVG]
    assert set(avg["strategy"]) == {STRATEGY_BUDGET} and set(avg["avg_benchmarks"]) == {2}
    assert len(report.frontier[(report.frontier["task"] == "m1_medqa_k4")
                               & (report.frontier["strategy"] == STRATEGY_MAJORITY)]) == 8  # fmt: skip


def test_the_avg_of_ten_benchmarks_pools_their_maj_at_k(tmp_path):
    folders = [
        full_table1_run(tmp_path / f"b{b}", gen_kwargs={"max_tokens_thinking": b}, date_id=f"2026-01-0{i + 1}T00")
        for i, b in enumerate((128, 256))
    ]
    report = build_report(folders, ReportOptions(n_boot=200))
    frame = report.frontier
    for folder in folders:
        results = json.loads(next(folder.glob("results_*.json")).read_text(encoding="utf-8"))["results"]
        run = report.loaded.runs[folders.index(folder)].label
        avg = frame[(frame["task"] == AVG) & (frame["run"] == run) & (frame["strategy"] == STRATEGY_MAJORITY)]
        assert list(avg["k"]) == [1, 2, 3] and set(avg["avg_benchmarks"]) == {10}
        for r in avg.itertuples():
            assert r.accuracy == pytest.approx(statistics.fmean(v[f"maj@{r.k},none"] for v in results.values()))
            assert r.mean_tokens_per_question == pytest.approx(r.k * (10 + ANSWER_TOKENS))  # 5, 10, 15: mean 10
        table = report.parallel_samples
        row = table[(table["run"] == run) & (table["task"] == AVG)].iloc[0]
        assert row["maj@2"] == pytest.approx(avg[avg["k"] == 2]["accuracy"].iloc[0]) and row["avg_benchmarks"] == 10


def test_the_figures_show_the_maj_at_k_curves_with_k_on_hover(sweep):
    _, target = sweep
    index = (target / "index.html").read_text(encoding="utf-8")
    spec = json.loads(re.search(r'data-target="figure-frontier">(.*?)</script>', index, re.S).group(1))
    shown = [trace for trace in spec["data"] if trace["visible"]]  # the Avg panel
    majority = [trace for trace in shown if trace["name"] == STRATEGY_MAJORITY]
    assert len(majority) == 2 and [t["showlegend"] for t in majority] == [True, False]  # a curve per setting
    assert majority[1]["x"] == pytest.approx([42, 84, 126, 168]) and majority[1]["y"] == pytest.approx(
        [100 * a for a in MAJ[512]]
    )
    settings = [row[1] for row in majority[1]["customdata"]]
    assert settings[0] == "maj@k: budget 512, k = 1 (one sample)"
    assert settings[2] == "maj@k: budget 512, k = 3 (majority of 3 samples)"
    budget = next(trace for trace in shown if trace["name"] == STRATEGY_BUDGET)
    assert budget["customdata"][0][1] == "budget: budget 256, one sample (acc: the mean of 4)"
    frontier = next(trace for trace in shown if trace["name"] == "Pareto frontier")
    assert frontier["x"] == pytest.approx([37, 42, 126]) and frontier["y"] == pytest.approx([56.25, 81.25, 100])
    frontier_csv = pd.read_csv(target / "frontier.csv")
    assert set(frontier_csv["strategy"]) == {STRATEGY_BUDGET, STRATEGY_MAJORITY} and len(frontier_csv) == 20
    assert (target / "frontier.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------- parallel-samples table


def test_the_parallel_samples_csv(sweep):
    report, target = sweep
    frame = pd.read_csv(target / "parallel_samples.csv")
    metrics = [f"{family}@{k}" for family in ("maj", "pass") for k in (1, 2, 3, 4)]
    assert list(frame.columns) == ["run", "task", "column", "samples", "n", "acc", *metrics, "avg_benchmarks"]
    assert list(frame["task"]) == ["m1_medqa_k4", AVG, "m1_medqa_k4", AVG]
    assert list(frame["run"]) == [label(256)] * 2 + [label(512)] * 2
    for budget in SWEEP:
        row = frame[(frame["run"] == label(budget)) & (frame["task"] == "m1_medqa_k4")].iloc[0]
        answers = SWEEP[budget][0]
        rights = [sum(letter == LETTERS[i] for letter in letters) for i, letters in enumerate(answers)]
        assert (row["samples"], row["n"], row["column"]) == (4, 4, "MedQA")
        assert row["acc"] == pytest.approx(ACC[budget]) and row["pass@1"] == pytest.approx(ACC[budget])
        assert [row[f"maj@{k}"] for k in (1, 2, 3, 4)] == pytest.approx(MAJ[budget])
        for k in (2, 3, 4):
            assert row[f"pass@{k}"] == pytest.approx(statistics.fmean(pass_at_k(4, c, k) for c in rights))
    assert frame[frame["task"] == AVG]["avg_benchmarks"].tolist() == [1, 1]
    assert "parallel_samples.csv" in (target / ".m1-report").read_text().splitlines()
    index = (target / "index.html").read_text(encoding="utf-8")
    section = index.index('<section id="parallel-samples">')
    assert index.index('<section id="budget">') < section < index.index('<section id="scoring">')
    assert index.index('id="table1"') < section and 'href="#parallel-samples"' in index
    table = index[section : index.index("</section>", section)]
    assert "<th data-type=\"num\">maj@3</th>" in table and "<td class=\"num\">81.25</td>" in table


def test_runs_of_different_k_share_the_table(tmp_path):
    answers, thinking = SWEEP[512]
    two = write_repeats_run(tmp_path / "two", {"m1_medqa_k2": ([a[:2] for a in answers], [t[:2] for t in thinking])},
                            model="org/two")  # fmt: skip
    four = write_repeats_run(tmp_path / "four", {"m1_medqa_k4": SWEEP[512]})
    table = build_report([two, four], ReportOptions(n_boot=200)).parallel_samples
    assert list(table["samples"]) == [2, 2, 4, 4]
    first = table.iloc[0]
    assert first["maj@2"] == pytest.approx(0.75) and math.isnan(first["maj@3"]) and math.isnan(first["pass@4"])


# ------------------------------------------------------------------- a greedy sweep beside a K-sample sweep


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """m1-eval demo's shape: one model's greedy sweep of m1_medqa (tests/test_report_frontier.py: budgets 256, 512,
    1024 x 0/1 Wait rounds) and its K = 4 sweep of m1_medqa_k4 (budgets 256, 512), in other runs."""
    from tests.test_report_frontier import write_sweep as write_greedy_sweep

    out = tmp_path_factory.mktemp("mixed")
    folders = write_greedy_sweep(out / "greedy") + write_sweep(out / "k4")
    report = build_report(folders, ReportOptions(n_boot=200))
    target = out / "report"
    write_report(report, target)
    return report, target


def test_one_benchmark_is_one_frontier_over_both_sweeps(mixed):
    report, target = mixed
    frame = report.frontier
    medqa = frame[frame["task"] != AVG]
    assert set(medqa["column"]) == {"MedQA"} and list(dict.fromkeys(medqa["task"])) == ["m1_medqa", "m1_medqa_k4"]
    # the Pareto frontier is the column's, over both sweeps' rows: the greedy 512 (50 % at 42 tokens) and 1024 (75 %
    # at 102) points, on their own sweep's frontier, are beaten by the K-sample 512 (81.25 % at 42)
    assert medqa["on_frontier"].tolist() == pareto_mask(medqa["mean_tokens_per_question"], medqa["accuracy"]).tolist()
    on = {(r.task, r.strategy, r.budget, r.ignore, int(r.k)) for r in medqa.itertuples() if r.on_frontier}
    assert on == {
        ("m1_medqa", STRATEGY_BUDGET, 256, 0, 1),
        ("m1_medqa_k4", STRATEGY_BUDGET, 256, 0, 1),
        ("m1_medqa_k4", STRATEGY_BUDGET, 512, 0, 1),
        ("m1_medqa_k4", STRATEGY_MAJORITY, 512, 0, 3),
    }
    # the two sweeps' curves are named apart (one line each, never one line through both)
    curves = {task: sorted(set(medqa[medqa["task"] == task]["curve"])) for task in ("m1_medqa", "m1_medqa_k4")}
    assert "budget (no Wait rounds)" in curves["m1_medqa"]
    assert curves["m1_medqa_k4"] == ["budget (no Wait rounds), 4 samples", "maj@k at budget 256, 4 samples",
                                     "maj@k at budget 512, 4 samples"]  # fmt: skip
    # frontier.csv: the same rows, one frontier per column, the task names kept
    written = pd.read_csv(target / "frontier.csv")
    assert written["on_frontier"].tolist() == frame["on_frontier"].tolist()
    assert set(written["task"]) == {AVG, "m1_medqa", "m1_medqa_k4"} and set(written["column"]) == {AVG, "MedQA"}
    avg = frame[frame["task"] == AVG]  # the Avg (MedQA, 1 of 10) is one frontier too
    assert avg["on_frontier"].tolist() == medqa["on_frontier"].tolist()


def test_one_benchmark_is_one_panel_of_each_figure(mixed):
    from m1_reports.render_plots import budget_figure
    from m1_reports.render_plots import frontier_figure as static_frontier

    report, target = mixed
    index = (target / "index.html").read_text(encoding="utf-8")
    for figure in ("figure-frontier", "figure-headline"):
        spec = json.loads(re.search(rf'data-target="{figure}">(.*?)</script>', index, re.S).group(1))
        assert [b["label"] for b in spec["layout"]["updatemenus"][0]["buttons"]] == ["Avg", "MedQA"], figure
    spec = json.loads(re.search(r'data-target="figure-frontier">(.*?)</script>', index, re.S).group(1))
    panel = [trace for trace in spec["data"][len(spec["data"]) // 2 :]]  # MedQA's traces (the Avg's are as many)
    names = [trace["name"] for trace in panel]
    assert names == ["budget", "budget (mean of 4 samples)", "Wait rounds", "Wait rounds", "maj@k", "maj@k",
                     "Pareto frontier"]  # fmt: skip
    sampled = panel[1]
    assert sampled["line"]["dash"] == "dash" and sampled["x"] == pytest.approx([PER_SAMPLE[256], PER_SAMPLE[512]])
    assert panel[-1]["x"] == pytest.approx([22, PER_SAMPLE[256], PER_SAMPLE[512], 3 * PER_SAMPLE[512]])
    # the budget curve: the K-sample sweep is a line of its own on MedQA's panel
    spec = json.loads(re.search(r'data-target="figure-headline">(.*?)</script>', index, re.S).group(1))
    assert [t["name"] for t in spec["data"] if not t["visible"]] == ["m1-7B-23K", "m1-7B-23K (ignore 1)",
                                                                       "m1-7B-23K (4 samples)"]  # fmt: skip
    # the static figures: one panel (an Avg of one benchmark is that benchmark)
    for figure in (static_frontier(report.frontier), budget_figure(report.budget)):
        assert [a.get_title() for a in figure.axes if a.axison] == ["MedQA"]


def test_the_summary_counts_a_benchmarks_questions_once_and_names_both_sweeps(mixed):
    _, target = mixed
    index = html.unescape((target / "index.html").read_text(encoding="utf-8"))
    summary = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", index[index.index('id="summary"') :]))
    assert "7 runs of m1-7B-23K, on MedQA (4 questions)." in summary  # the K-sample runs ask the same 4
    assert ("Sweeps over thinking budget 256, 512, 1024 × ignore rounds 0, 1; and over thinking budget 256, 512 "
            "with 4 samples per question (temperature 0.6).") in summary  # fmt: skip
    assert "highest 81.25 % (m1-7B-23K (budget 512, 4 samples))" in summary


def test_a_k_sample_sweep_alone_names_its_samples(sweep):
    _, target = sweep
    index = html.unescape((target / "index.html").read_text(encoding="utf-8"))
    summary = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", index[index.index('id="summary"') :]))
    assert "2 runs of m1-7B-23K, on MedQA (4 questions)." in summary
    assert "A sweep over thinking budget 256, 512 with 4 samples per question (temperature 0.6)." in summary


# ------------------------------------------------------------------------------------------------ the browser


def browser_data(target: Path) -> dict:
    text = (target / "questions_m1_medqa_k4.js").read_text(encoding="utf-8")
    return json.loads(text[text.index("]=") + 2 : -2])


def test_the_browser_shows_sample_1_of_k_and_every_samples_verdict(sweep):
    _, target = sweep
    data = browser_data(target)
    assert data["label"] == "MedQA (4 samples)"
    strips = {q[0]: q[4] for q in data["questions"]}
    # 256 | 512: 3 of 4 | 4 of 4; 2 | 3; 4 | 3; 0 (one unanswered) | 3
    assert strips == {"0": "PR", "1": "PP", "2": "RP", "3": "NP"}
    entry = data["texts"]["1"]["runs"][0]
    assert (entry["k"], entry["right"]) == (4, 2)
    assert entry["samples"] == [["W", "C"], ["R", "B"], ["R", "B"], ["W", "C"]]
    assert entry["extracted"] == "C" and entry["v"] == "P"
    assert entry["disagrees"] == ""  # sample 1 is wrong in the file (avg@1 0) and by the scorer: no alarm
    unanswered = data["texts"]["3"]["runs"][0]["samples"]
    assert [code for code, _ in unanswered] == ["W", "W", "N", "W"]
    page = (target / "samples.html").read_text(encoding="utf-8")
    assert '<option value="P">partly right' in page and "sample 1's" in page
    script = (target / "m1-report.js").read_text(encoding="utf-8")
    assert '"sample 1 of " + entry.k' in script


def test_the_browser_says_when_the_file_disagrees_about_sample_1(tmp_path):
    folder = write_repeats_run(tmp_path / "run", {"m1_medqa_k4": SWEEP[256]})
    samples = next(folder.glob("samples_*.jsonl"))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["avg@1"] = 0.0  # the file says sample 1 of document 0 was wrong; the scorer finds its A right
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report([folder], ReportOptions(n_boot=200))
    write_report(report, tmp_path / "report")
    entry = browser_data(tmp_path / "report")["texts"]["0"]["runs"][0]
    assert "judges it correct, the samples file wrong" in entry["disagrees"]


# -------------------------------------------------------------------------------------------- without repeats


def test_a_report_without_repeats_has_none_of_it(tmp_path):
    tasks = small_table1(0.01, seed=1, budget=512)
    write_run(tmp_path / "a", tasks, gen_kwargs={"max_tokens_thinking": 512})
    report = build_report([tmp_path / "a"], ReportOptions(n_boot=200))
    write_report(report, tmp_path / "report")
    assert report.protocol.fields == list(FIELDS) and "samples" not in report.protocol.rows()[0]["cells"]
    assert report.parallel_samples.empty and report.loaded.labels == ["model-a (budget 512)"]
    assert not (tmp_path / "report" / "parallel_samples.csv").exists()
    index = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "parallel-samples" not in index and "samples per question" not in index
    assert "samples" not in pd.read_csv(tmp_path / "report" / "protocol.csv").columns
    page = (tmp_path / "report" / "samples.html").read_text(encoding="utf-8")
    assert "partly right" not in page and '"repeats"' not in page
