"""The HTML pages (parsed, escaped, self-contained), the plots, and atomic writing."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports import render_html as html_module
from m1_reports import report as report_module
from tests.report_fixtures import make_truth, small_table1, write_run

EVIL = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Collector:
    collector = Collector()
    collector.feed(path.read_text(encoding="utf-8"))
    collector.close()
    return collector


@pytest.fixture(scope="module")
def evil_report(tmp_path_factory):
    """Runs whose prompts, responses, targets and label carry markup."""
    out = tmp_path_factory.mktemp("evil")
    run = write_run(out / "a", small_table1(0.01, seed=4, budget=300), gen_kwargs={"max_tokens_thinking": 300})
    write_run(out / "b", small_table1(0.01, seed=5), model="org/model-b", records=False)
    samples = next(run.folder.glob("samples_m1_medqa_*.jsonl"))
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:
        row["resps"] = [[f"<|im_start|>think\nthinking {EVIL}\n<|im_start|>answer\nanswer {EVIL}"]]
        row["filtered_resps"] = [f"{EVIL}"]
        row["arguments"]["gen_args_0"]["arg_0"] = f"prompt {EVIL}"
        row["target"] = EVIL
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report(
        [out / "a", out / "b"],
        ReportOptions(labels=[f"mine {EVIL}", "theirs"], baseline="theirs", n_boot=300, title=f"title {EVIL}"),
    )
    target = out / "report"
    write_report(report, target)
    return report, target


OWN_SCRIPTS = {"plotly.min.js", "m1-report.js"}


def test_no_markup_from_files_survives(evil_report):
    _, target = evil_report
    for name in ("index.html", "samples.html"):
        page = parse(target / name)
        for tag, attrs in page.tags:  # the report's own scripts only: files beside the page, or JSON data
            if tag == "script":
                assert attrs.get("src") in OWN_SCRIPTS or attrs.get("type") == "application/json", (name, attrs)
        assert not any(tag == "img" and "onerror" in attrs for tag, attrs in page.tags), name
        assert not any(attrs.get("src", "").startswith("x") for _, attrs in page.tags)
        source = (target / name).read_text()
        assert "Content-Security-Policy" in source and "script-src 'self'" in source and "unsafe-inline'; img" in source
        assert "<script>" not in source and "<img src=x" not in source  # escaped wherever it is
        # self-contained: nothing fetched from elsewhere
        for tag, attrs in page.tags:
            for key in ("src", "href"):
                value = attrs.get(key) or ""
                assert not value.startswith(("http:", "https:", "//")) or tag == "a", (tag, attrs)
    assert EVIL in "".join(parse(target / "index.html").text)  # the label and title, shown as text
    # the question data: JavaScript files whose every text is a JSON string (no markup can leave it)
    for path in target.glob("questions_*.js"):
        text = path.read_text()
        assert "<" not in text and text.startswith("window.M1Questions=")
        assert "\\u003cscript>" in text or "m1_medqa" not in path.name


def test_question_browser_data_is_every_question_and_verdict(evil_report):
    report, target = evil_report
    from tests.test_report_rescoring import question_data

    data = question_data(target)
    samples = report.loaded.samples
    assert set(data) == set(samples["task"].astype(str))
    labels = report.loaded.labels
    for task, task_data in data.items():
        part = samples[samples["task"] == task]
        assert len(task_data["questions"]) == part["doc_id"].nunique()
        kept = [q for q in task_data["questions"] if q[5]]
        assert len(kept) == min(50, len(task_data["questions"])) and set(task_data["texts"]) == {q[0] for q in kept}
        for doc_id, _text, target_letter, options, strip, _ in task_data["questions"]:
            assert len(strip) == len(task_data["runs"]) and len(options) == 4
            assert target_letter == (EVIL if task == "m1_medqa" else target_letter) and target_letter
            for column, run in enumerate(task_data["runs"]):
                row = part[(part["run"] == labels[run]) & (part["doc_id"].astype(str) == doc_id)].iloc[0]
                expected = "R" if row["acc"] >= 1 else "N" if row["no_answer"] > 0 else "W"
                assert strip[column] == expected, (task, doc_id, run)
    medqa = data["m1_medqa"]
    texts = next(iter(medqa["texts"].values()))
    assert texts["prompt"] == "prompt " + EVIL or any(r.get("prompt") == "prompt " + EVIL for r in texts["runs"])
    mine = next(r for r in texts["runs"] if labels[r["run"]].startswith("mine"))
    assert mine["answer"] == "answer " + EVIL and mine["thinking"] == "thinking " + EVIL + "\n"
    page = "".join(parse(target / "samples.html").text)
    assert "question browser" in page and "--browser-limit" in page


def test_index_has_every_section(evil_report):
    report, target = evil_report
    page = "".join(parse(target / "index.html").text)
    for heading in ("Table 1: accuracy (%)", "Paired comparisons", "Thinking budget", "Fuzzy fallback", "Runs"):
        assert heading in page
    assert "HuatuoGPT-o1-8B" in page and "arXiv:2504.00869v2" in page
    medqa = report.table1.value.at[report.loaded.labels[0], "MedQA"]
    assert f"{100 * medqa:.2f}" in page


def test_plots_are_written_and_embedded(evil_report):
    pytest.importorskip("matplotlib")
    pytest.importorskip("plotly")
    _, target = evil_report
    assert (target / "budget_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (target / "budget_scaling.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<script" not in svg
    index = (target / "index.html").read_text()
    assert 'class="m1-figure" data-target="figure-headline"' in index and '<script src="plotly.min.js">' in index
    assert (target / "plotly.min.js").stat().st_size > 1_000_000


def test_without_plotly_the_static_figure_is_embedded(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from m1_reports import render_figures

    monkeypatch.setattr(render_figures, "figures_available", lambda: False)
    write_run(tmp_path / "a", {"m1_medqa": make_truth(20, 0.5, seed=1)}, gen_kwargs={"max_tokens_thinking": 64})
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    write_report(report, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert 'src="data:image/svg+xml;base64,' in index and "m1-figure" not in index
    assert not (tmp_path / "rep" / "plotly.min.js").exists()


def test_plot_without_budget_runs(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path / "a", {"m1_medqa": make_truth(20, 0.5, seed=1)}, gen_kwargs=None, records=False)
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    write_report(report, tmp_path / "rep")
    assert (tmp_path / "rep" / "budget_scaling.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------------ atomic writes


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_failing_render_leaves_nothing_half_written(tmp_path, monkeypatch):
    write_run(tmp_path / "a", {"m1_medqa": make_truth(20, 0.5, seed=1)})
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    target = tmp_path / "reports" / "r"

    def broken(**kwargs):
        raise RuntimeError("template exploded")

    # 1. a new report fails midway (after the tables, at the sample browser): no folder at all
    monkeypatch.setattr(html_module, "render_browser", broken)
    with pytest.raises(RuntimeError, match="template exploded"):
        write_report(report, target)
    assert not target.exists() and _leftovers(target.parent, "r") == []

    # 2. a previous report stays exactly as it was
    monkeypatch.undo()
    write_report(report, target)
    before = _snapshot(target)
    assert {"table1.md", "table1.csv", "table1.tex", "index.html", "samples.html", "leaderboard.json"} <= set(before)
    monkeypatch.setattr(html_module, "render_browser", broken)
    with pytest.raises(RuntimeError):
        write_report(report, target)
    assert _snapshot(target) == before and _leftovers(target.parent, "r") == []

    # 3. failing earlier (the LaTeX table) too
    monkeypatch.undo()
    monkeypatch.setattr(report_module, "table1_latex", lambda table: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(report, target)
    assert _snapshot(target) == before and _leftovers(target.parent, "r") == []


def test_rewriting_replaces_the_previous_report(tmp_path):
    write_run(tmp_path / "a", {"m1_medqa": make_truth(20, 0.5, seed=1)})
    target = tmp_path / "rep"
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    write_report(report, target)
    assert {"samples.html", "index.html"} <= set((target / ".m1-report").read_text().splitlines())
    # rewritten without the HTML pages: the old report's files (its marker lists them) go, the new ones stay
    report.options.html = False
    write_report(report, target)
    assert not (target / "samples.html").exists() and (target / "table1.csv").exists()
    assert "samples.html" not in (target / ".m1-report").read_text().splitlines()
    assert _leftovers(tmp_path, "rep") == []
    # (a file m1-report did not write stops the rewrite: tests/test_report_output.py)
