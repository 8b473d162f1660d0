"""Document counts against the paper's: a WARNING with both numbers, and a ‡ beside the Table 1 cell."""

from __future__ import annotations

import json
import logging
import re
from html import unescape

import pandas as pd
import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.document_counts import COUNT_MARK, count_notes
from m1_tasks.benchmarks import EXPECTED_COUNTS, TASK_SOURCES
from tests.report_fixtures import make_truth, small_table1, write_run


def paper(task: str) -> int:
    return EXPECTED_COUNTS[TASK_SOURCES[task]]


def _report(tmp_path, name="rep", **options):
    report = build_report(
        sorted(p for p in tmp_path.iterdir() if p.name.startswith("run")),
        ReportOptions(references=["HuatuoGPT-o1-8B"], n_boot=200, plots=False, **options),
    )
    write_report(report, tmp_path / name)
    return report, tmp_path / name


def test_a_limited_run_is_flagged_everywhere(tmp_path, caplog):
    tasks = {"m1_medqa": make_truth(100, 0.6, seed=1), "m1_gpqa_med": make_truth(paper("m1_gpqa_med"), 0.5, seed=2)}
    write_run(tmp_path / "run_a", tasks, limit=100, original={"m1_gpqa_med": paper("m1_gpqa_med")})
    with caplog.at_level(logging.WARNING, logger="m1_reports"):
        report, target = _report(tmp_path)
    label = report.loaded.labels[0]
    expected = f"n=100 of the paper's {paper('m1_medqa')} (--limit 100)"
    # the WARNING names the task with both numbers; GPQA (full count) is not in it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "document counts" in r.getMessage()]
    assert len(warnings) == 1 and f"MedQA: {expected}" in warnings[0] and "GPQA" not in warnings[0]
    # the notes: MedQA only
    assert [(n.task, n.n, n.paper) for n in report.counts] == [("m1_medqa", 100, paper("m1_medqa"))]
    assert report.table1.count_note(label, "MedQA") == expected and report.table1.count_note(label, "GPQA") == ""
    # Markdown: the cell carries ‡, the footnote says why; the GPQA cell does not
    markdown = (target / "table1.md").read_text()
    table_part = markdown[markdown.index("# Table 1") :]
    row = next(line for line in table_part.splitlines() if line.startswith(f"| {label}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    headers = [c.strip() for c in table_part.splitlines()[4].strip("|").split("|")]
    assert cells[headers.index("MedQA")].endswith(COUNT_MARK)
    assert COUNT_MARK not in cells[headers.index("GPQA")]
    assert f"{COUNT_MARK} Scored on other documents than the paper's: {label}: MedQA: {expected}." in table_part
    # the header (top of table1.md, protocol.md) lists it
    assert f"- {label}: MedQA: {expected}" in markdown[: markdown.index("# Table 1")]
    assert f"MedQA: {expected}" in (target / "protocol.md").read_text()
    # CSV, LaTeX, HTML
    csv = pd.read_csv(target / "table1.csv").set_index("model")
    assert csv.loc[label, "MedQA_n"] == 100 and csv.loc[label, "MedQA_n_paper"] == paper("m1_medqa")
    assert csv.loc[label, "MedQA_count_note"] == expected and pd.isna(csv.loc[label, "GPQA_count_note"])
    assert pd.isna(csv.loc["HuatuoGPT-o1-8B", "MedQA_count_note"])
    latex = (target / "table1.tex").read_text()
    tex_row = next(line for line in latex.splitlines() if line.startswith("model-a"))
    assert tex_row.count("\\textsuperscript{\\ddag}") == 2  # MedQA and the Avg over it
    assert "\\textsuperscript{\\ddag} Scored on other documents" in latex
    page = unescape((target / "index.html").read_text())
    assert re.search(rf'title="n = 100; 95 % CI \[[^\]]+\]; {re.escape(expected)}"', page)  # the cell's title
    assert f"{label}: MedQA: {expected}" in page.replace("</strong>", "")


def test_a_full_count_run_is_not_flagged(tmp_path, caplog):
    tasks = {t: make_truth(paper(t), 0.6, seed=i) for i, t in enumerate(("m1_medqa", "m1_gpqa_med", "m1_medbullets_op4"))}
    write_run(tmp_path / "run_a", tasks, records=False)
    with caplog.at_level(logging.WARNING, logger="m1_reports"):
        report, target = _report(tmp_path)
    assert report.counts == [] and not report.table1.counts
    assert not [r for r in caplog.records if "document counts" in r.getMessage()]
    for name in ("table1.md", "protocol.md", "index.html", "table1.tex"):
        text = (target / name).read_text()
        assert COUNT_MARK not in text and "\\ddag" not in text, name
    assert pd.read_csv(target / "table1.csv")["MedQA_count_note"].isna().all()


def test_missing_benchmarks_of_a_table1_run(tmp_path):
    """A partial data file without Lancet and NEJM: the run's m1_table1 group lists them, the results lack them."""
    tasks = small_table1(0.01, seed=1)
    del tasks["m1_lancet"], tasks["m1_nejm"]
    run = write_run(tmp_path / "run_a", tasks, group=False)
    data = json.loads(run.results.read_text())
    data["group_subtasks"] = {"m1_table1": list(TASK_SOURCES)[:10]}
    run.results.write_text(json.dumps(data))
    report, target = _report(tmp_path)
    missing = {n.column: n for n in report.counts if n.missing}
    assert set(missing) == {"Lancet", "NEJM"}
    assert missing["NEJM"].text == f"n=0 of the paper's {paper('m1_nejm')} (not evaluated)"
    assert f"NEJM: n=0 of the paper's {paper('m1_nejm')} (not evaluated)" in (target / "protocol.md").read_text()


def test_data_file_and_cot_counts(tmp_path):
    """A partial data file (fewer documents before any --limit) and a CoT task, which has its base task's count."""
    tasks = {"m1_medqa_cot": make_truth(1000, 0.6, seed=1), "m1_hle": make_truth(paper("m1_hle"), 0.1, seed=2)}
    write_run(tmp_path / "run_a", tasks, records=False)
    report, _ = _report(tmp_path)
    notes = count_notes(report.loaded.runs)
    assert [(n.task, n.column, n.text) for n in notes] == [
        ("m1_medqa_cot", "MedQA", f"n=1000 of the paper's {paper('m1_medqa')} (the data file has 1000)")
    ]


@pytest.mark.parametrize("limit", [None, 20])
def test_other_tasks_have_no_paper_count(tmp_path, limit):
    write_run(tmp_path / "run_a", {"m1_demo": make_truth(20, 0.5, seed=1), "my_task": make_truth(20, 0.5, seed=2)},
              limit=limit)  # fmt: skip
    report, _ = _report(tmp_path)
    assert report.counts == []
