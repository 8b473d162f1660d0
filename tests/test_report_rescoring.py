"""The question browser shows the m1 scorer's own extraction and rule (one scorer everywhere)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from m1_reports import ReportOptions, build_report, kept_samples, read_results, write_report
from m1_tasks import scoring
from m1_tasks.task_utils import scoring_doc
from tests.report_fixtures import TaskTruth, make_truth, write_run

# The extractor the report used to have (m1_reports/reading.py, extract_letter, before this change): its first
# pattern read the first capital letter inside \boxed{...}, so "\boxed{Hypertension}" gave "H".
OLD_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-Z])\)?")

HYPER_DOC = {
    "options": [
        {"letter": "A", "text": "Hypotension"},
        {"letter": "B", "text": "Bradycardia"},
        {"letter": "C", "text": "Hypertension"},
        {"letter": "D", "text": "Tachycardia"},
    ],
    "answer": "Hypotension",
    "answer_idx": "A",
}
HYPER_RESPONSE = "<|im_start|>think\nThe pressure is high.\n<|im_start|>answer\nThe diagnosis is \\boxed{Hypertension}."
# Empty answer after the marker: the scorer reads the marker itself (m1's answer_prefix + answer).
EMPTY_RESPONSE = "<|im_start|>think\nHmm.\n<|im_start|>answer\n"
TEXT_RESPONSE = "<|im_start|>think\nLet me see.\n<|im_start|>answer\nFinal answer: \\boxed{\\text{(B)}}"


def _truth(correct: list[int], no_answer: list[int] | None = None) -> TaskTruth:
    n = len(correct)
    return TaskTruth(correct, list(correct), no_answer or [0] * n, [100] * n, [0] * n, [0] * n)


DATA = re.compile(
    r"^window\.M1Questions=window\.M1Questions\|\|\{\};window\.M1Questions\[(?P<task>\"[^\"]*\")\]=(?P<data>.*);$", re.S
)


def question_data(folder: Path) -> dict[str, dict]:
    """The question browser's data files of a report: task -> its data (questions, every run's texts)."""
    found = {}
    for path in sorted(folder.glob("questions_*.js")):
        match = DATA.match(path.read_text(encoding="utf-8").strip())
        assert match, path
        found[json.loads(match["task"])] = json.loads(match["data"])
    return found


def browser_entries(folder: Path) -> list[dict[str, str]]:
    """Per shown sample (every run's of every question kept): its extracted and rule and its file:line."""
    return [
        {"extracted": run["extracted"], "rule": run["rule"], "where": run["where"], "disagrees": run["disagrees"],
         "rule_text": run["rule_text"]}
        for data in question_data(folder).values()
        for texts in data["texts"].values()
        for run in texts["runs"]
    ]  # fmt: skip


@pytest.fixture(scope="module")
def rescored(tmp_path_factory):
    out = tmp_path_factory.mktemp("rescore")
    # MedQA: docs 0-2 wrong with hand-written responses, the rest from the fixture writer.
    medqa = _truth([0, 0, 0, 0, 1, 1, 0, 1], no_answer=[0, 0, 0, 1, 0, 0, 0, 0])
    run = write_run(
        out / "a",
        {"m1_medqa": medqa, "m1_gpqa_med": make_truth(12, 0.5, seed=3, budget=512)},
        gen_kwargs={"max_tokens_thinking": 512},
        responses={("m1_medqa", 0): HYPER_RESPONSE, ("m1_medqa", 1): EMPTY_RESPONSE, ("m1_medqa", 2): TEXT_RESPONSE},
        docs={("m1_medqa", 0): HYPER_DOC},
    )
    report = build_report([out / "a"], ReportOptions(references=["none"], n_boot=200, plots=False))
    target = out / "report"
    write_report(report, target)
    return run, report, target


def _row(where: str, folder: Path) -> dict:
    name, line = where.rsplit(":", 1)
    return json.loads((folder / name).read_text(encoding="utf-8").splitlines()[int(line) - 1])


def test_browser_extraction_is_the_scorers(rescored):
    run, report, target = rescored
    entries = browser_entries(target)
    shown = len(report.loaded.browser)
    assert shown > 5 and len(entries) == shown
    for entry in entries:
        row = _row(entry["where"], run.folder)
        expected = scoring.score_response(row["filtered_resps"][0], scoring_doc(row["doc"]))
        assert entry["extracted"] == (expected["extracted"] or "–"), entry
        assert entry["rule"] == expected["rule"], entry


def test_a_sample_the_old_extractor_read_differently(rescored):
    run, report, target = rescored
    entry = next(e for e in browser_entries(target) if e["where"].endswith(":1") and "_m1_medqa_" in e["where"])
    expected = scoring.score_response(HYPER_RESPONSE, scoring_doc({"question": "q", **HYPER_DOC}))
    assert (expected["extracted"], expected["rule"]) == ("C", scoring.RULE_OPTION_TEXT)
    assert (entry["extracted"], entry["rule"]) == ("C", scoring.RULE_OPTION_TEXT)
    assert OLD_BOXED_LETTER.findall(HYPER_RESPONSE)[-1] == "H"  # what the browser used to show
    sample = next(s for s in report.loaded.browser if s.task == "m1_medqa" and s.doc_id == 0)
    assert sample.verdict.raw_extracted == "Hypertension" and sample.verdict.correct is False


def test_the_scorer_sees_the_marker(rescored):
    """The empty answer is judged from the marker on, as the scorer does: whatever it picks, the browser agrees,
    and the displayed answer is the text after the marker."""
    _, report, _ = rescored
    sample = next(s for s in report.loaded.browser if s.task == "m1_medqa" and s.doc_id == 1)
    expected = scoring.score_response(EMPTY_RESPONSE, scoring_doc(sample.doc))
    assert (sample.verdict.extracted, sample.verdict.rule) == (expected["extracted"], expected["rule"])
    assert expected["raw_extracted"].startswith(scoring.ANSWER_MARKER)  # the scorer read the marker
    assert sample.answer == "" and sample.thinking == "Hmm.\n"


def test_no_second_extractor():
    assert not hasattr(read_results, "extract_letter") and not hasattr(read_results, "split_response")
    assert kept_samples.ANSWER_MARKER is scoring.ANSWER_MARKER  # the browser's display split (moved from reading.py)
    for module in (read_results, kept_samples):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert '"<|im_start|>answer"' not in source and "boxed" not in source


def test_only_the_shown_samples_are_rescored(tmp_path, monkeypatch):
    calls = []
    original = scoring.score_response

    def counting(text, doc):
        calls.append(text)
        return original(text, doc)

    monkeypatch.setattr(scoring, "score_response", counting)
    tasks = {"m1_medqa": make_truth(60, 0.3, seed=1), "m1_pubmedqa": make_truth(60, 0.3, seed=2)}
    write_run(tmp_path / "a", tasks)
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200, browser_limit=4))
    assert len(report.loaded.browser) == 8 and len(calls) == 8
    assert all(s.verdict is not None and s.verdict.scored for s in report.loaded.browser)


def test_tasks_of_other_suites_are_not_rescored(tmp_path):
    write_run(tmp_path / "a", {"my_task": make_truth(20, 0.3, seed=1)})
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    assert report.loaded.browser
    assert all(not s.verdict.scored and "not an m1 task" in s.verdict.reason for s in report.loaded.browser)
    write_report(report, tmp_path / "rep")
    entries = browser_entries(tmp_path / "rep")
    assert entries and all(e["rule"] == "not re-scored" and "not an m1 task" in e["rule_text"] for e in entries)


def test_an_older_scorers_verdict_is_pointed_out(tmp_path):
    """A version 1.0 run: the file says wrong where this m1-eval's scorer says right; the browser says so."""
    doc = {**HYPER_DOC, "answer": "Hypertension", "answer_idx": "C"}
    write_run(
        tmp_path / "a",
        {"m1_medqa": _truth([0, 1, 1])},
        task_version=1.0,
        responses={("m1_medqa", 0): HYPER_RESPONSE},
        docs={("m1_medqa", 0): doc},
    )
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    write_report(report, tmp_path / "rep")
    disagrees = " ".join(e["disagrees"] for e in browser_entries(tmp_path / "rep"))
    assert "This m1-eval's scorer judges it correct, the samples file wrong" in disagrees
    assert "older m1-eval scorer (task version 1.0); re-score or re-run" in disagrees
