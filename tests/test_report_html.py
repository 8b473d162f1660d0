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


def test_no_markup_from_files_survives(evil_report):
    _, target = evil_report
    for name in ("index.html", "samples.html"):
        page = parse(target / name)
        tags = [tag for tag, _ in page.tags]
        assert "script" not in tags, name
        assert not any(tag == "img" and "onerror" in attrs for tag, attrs in page.tags), name
        assert not any(attrs.get("src", "").startswith("x") for _, attrs in page.tags)
        text = "".join(page.text)
        assert EVIL in text  # shown as text, escaped in the source
        source = (target / name).read_text()
        assert "&lt;script&gt;" in source
        assert "Content-Security-Policy" in source
        # self-contained: nothing fetched from elsewhere
        for tag, attrs in page.tags:
            for key in ("src", "href"):
                value = attrs.get(key) or ""
                assert not value.startswith(("http:", "//")) or tag == "a", (tag, attrs)


def test_sample_browser_shows_wrong_and_unanswered(evil_report):
    report, target = evil_report
    source = (target / "samples.html").read_text()
    page = "".join(parse(target / "samples.html").text)
    assert "wrong" in page and "no answer" in page
    assert "prompt " + EVIL in page and "thinking " + EVIL in page and "answer " + EVIL in page
    # counts per run and task agree with the samples frame
    samples = report.loaded.samples
    part = samples[(samples["run"] == report.loaded.labels[1]) & (samples["task"] == "m1_nejm")]
    flagged = int(((part["acc"] < 1) | (part["no_answer"] > 0)).sum())
    assert f"{min(flagged, 50)} shown of {flagged} wrong or unanswered ({len(part)} samples)" in page
    assert 'id="task-m1_medqa"' in source


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
    _, target = evil_report
    assert (target / "budget_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (target / "budget_scaling.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<script" not in svg
    assert 'src="data:image/svg+xml;base64,' in (target / "index.html").read_text()


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
