"""The protocol header: each run's protocol read from its files, flagged against the paper's and between runs."""

from __future__ import annotations

import json
import logging
from html import unescape

import pandas as pd
import pytest

from m1_reports import ReportOptions, build_report, write_report
from m1_reports.cli import main
from m1_reports.protocol import FIELDS, INFO, WARN
from m1_reports.reference import paper_protocol
from tests.report_fixtures import make_truth, small_table1, write_run

PAPER = paper_protocol()


def two_tasks(**kwargs):
    return {"m1_medqa": make_truth(20, 0.6, seed=1, **kwargs), "m1_gpqa_med": make_truth(20, 0.5, seed=2, **kwargs)}


def build(tmp_path, *runs, **options):
    report = build_report(list(runs), ReportOptions(references=["none"], n_boot=200, plots=False, **options))
    write_report(report, tmp_path / "rep")
    return report, tmp_path / "rep"


def flags(report, run=0):
    label = report.loaded.labels[run]
    return {f.field: f for f in report.protocol.flags_of(label)}


def test_the_paper_protocol_is_shipped_data():
    assert (PAPER.temperature, PAPER.seed, PAPER.max_gen_toks, PAPER.max_tokens_answer) == (0.0, 42, 2048, 1024)
    assert PAPER.chat_template and PAPER.prompt == "plain" and "marker included" in PAPER.scorer


def test_the_header_states_every_field(tmp_path):
    write_run(tmp_path / "a", two_tasks(budget=4096, ignore=1), model="UCSC-VLAA/m1-7B-23K",
              gen_kwargs="max_tokens_thinking=4096,thinking_n_ignore=1")  # fmt: skip
    report, target = build(tmp_path, tmp_path / "a")
    cells = report.protocol.protocols[0].display()
    assert cells == {
        "budget": "4096",
        "ignore": "1",
        "temperature": "0 (greedy)",
        "seed": "1234 (m1-vllm default)",
        "max_tokens": "thinking 4096 + answer 1024",
        "chat_template": cells["chat_template"],
        "prompt": "plain",
        "scorer": "m1 v2.0 (answer marker included, m1's rule)",
    }
    assert cells["chat_template"].startswith("on (sha ")
    # a forced, greedy run with the defaults: only the seed differs from the paper (a note: greedy)
    assert {f.field: f.level for f in report.protocol.flags} == {"seed": INFO}
    assert report.protocol.forcing_note == PAPER.forcing_note
    # the header is at the top of index.html, table1.md and protocol.md, with every field
    page = unescape((target / "index.html").read_text())
    # the first screen is the summary, the figure and Table 1; the protocol follows, its state in the summary
    assert page.index('<section id="table1">') < page.index('<section id="protocol">')
    assert "the paper's, apart from 1 note without effect on the scores" in page[: page.index('<section id="table1">')]
    markdown = (target / "table1.md").read_text()
    assert markdown.startswith("# Protocol") and markdown.index("# Protocol") < markdown.index("# Table 1")
    for text in (page, markdown, (target / "protocol.md").read_text()):
        for _, label in FIELDS:
            assert label in text
        for value in ("4096", "0 (greedy)", "thinking budget + answer 1024", "m1 v2.0", "1234 (m1-vllm default)"):
            assert value in text
        assert "exactly its thinking budget" in text  # the forcing note, once
        assert text.count("exactly its thinking budget") == 1
    csv = pd.read_csv(target / "protocol.csv")
    assert list(csv["budget"].astype(str)) == ["4096"] and list(csv["differs_from_paper"]) == ["seed"]


def test_an_unforced_run_has_no_forcing_note(tmp_path):
    write_run(tmp_path / "a", two_tasks(), gen_kwargs=None, model_source="hf")
    report, target = build(tmp_path, tmp_path / "a")
    protocol = report.protocol.protocols[0]
    assert protocol.display()["budget"] == "none (no forcing)" and protocol.display()["max_tokens"] == "2048 new tokens"
    assert report.protocol.forcing_note == ""
    assert "exactly its thinking budget" not in (target / "index.html").read_text()
    assert "max_tokens" not in flags(report)  # 2048 new tokens: the paper's baselines


def test_sampled_against_greedy_and_seeds(tmp_path):
    write_run(tmp_path / "greedy", two_tasks(), model_args={"pretrained": "org/model-a", "seed": 42})
    write_run(tmp_path / "sampled", two_tasks(), model="org/model-b", gen_kwargs={"temperature": 0.6, "top_p": 0.95},
              model_args="pretrained=org/model-b,seed=7")  # fmt: skip
    report, target = build(tmp_path, tmp_path / "greedy", tmp_path / "sampled")
    greedy, sampled = flags(report, 0), flags(report, 1)
    assert "temperature" not in greedy and "seed" not in greedy  # greedy, seed 42 from model_args
    assert sampled["temperature"].level == WARN and "0.6" in sampled["temperature"].message
    assert "instead of the paper's greedy decoding" in sampled["temperature"].message
    assert sampled["seed"].level == WARN and "seed 7 (model_args) instead of the paper's 42" in sampled["seed"].message
    cells = report.protocol.protocols[1].display()
    assert cells["temperature"] == "0.6 (sampled, top_p 0.95)" and cells["seed"] == "7 (model_args)"
    # the two runs differ in temperature and seed, nothing else
    assert {d.field for d in report.protocol.differences} == {"temperature", "seed"}
    markdown = (target / "protocol.md").read_text()
    assert "The compared runs differ in:" in markdown  # no sweep: no axes to set apart
    assert "- temperature: 0 (greedy): model-a; 0.6 (sampled, top_p 0.95): model-b" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| model-b"))
    assert "⚠ 0.6 (sampled, top_p 0.95)" in row and "⚠ 7 (model_args)" in row


def test_seed_gen_kwarg_and_engine_default_sampling(tmp_path):
    write_run(tmp_path / "a", two_tasks(), gen_kwargs={"temperature": 0.7, "seed": 42})
    report, _ = build(tmp_path, tmp_path / "a")
    assert report.protocol.protocols[0].display()["seed"] == "42 (seed gen_kwarg)" and "seed" not in flags(report)
    assert "temperature" in flags(report)


def test_max_tokens_against_the_paper(tmp_path):
    write_run(tmp_path / "short", two_tasks(), gen_kwargs={"max_gen_toks": 1024})
    write_run(tmp_path / "answer", two_tasks(budget=2048), model="org/model-b",
              gen_kwargs={"max_tokens_thinking": 2048, "max_tokens_answer": 512})  # fmt: skip
    report, _ = build(tmp_path, tmp_path / "short", tmp_path / "answer")
    short, answer = flags(report, 0)["max_tokens"], flags(report, 1)["max_tokens"]
    assert "max_gen_toks 1024" in short.message and "2048 new tokens of the paper's baselines" in short.message
    assert "512 answer tokens" in answer.message and "the paper's 1024" in answer.message
    assert report.protocol.protocols[1].display()["max_tokens"] == "thinking 2048 + answer 512"


def test_chat_template_off(tmp_path):
    write_run(tmp_path / "a", two_tasks(), chat_template=None)
    report, target = build(tmp_path, tmp_path / "a")
    assert report.protocol.protocols[0].display()["chat_template"] == "off (no --apply_chat_template)"
    assert flags(report)["chat_template"].level == WARN
    assert "no chat template" in unescape((target / "index.html").read_text())


def test_chat_template_not_recorded(tmp_path):
    """Results without the chat_template key (older lm-eval, --allow-other-versions): unknown, not "off"."""
    run = write_run(tmp_path / "a", two_tasks(), chat_template=None)
    data = json.loads(run.results.read_text())
    del data["chat_template"], data["chat_template_sha"]
    run.results.write_text(json.dumps(data))
    report, _ = build(tmp_path, tmp_path / "a")
    assert report.protocol.protocols[0].display()["chat_template"] == "unknown (not in the results file)"
    assert "chat_template" not in flags(report)


def test_cot_prompts(tmp_path):
    write_run(tmp_path / "task", {"m1_medqa_cot": make_truth(20, 0.6, seed=1)})
    write_run(tmp_path / "meta", two_tasks(), model="org/model-b", metadata={"prompt": "cot"})
    report, _ = build(tmp_path, tmp_path / "task", tmp_path / "meta")
    assert report.protocol.protocols[0].display()["prompt"] == "+CoT (task config)"
    assert report.protocol.protocols[1].display()["prompt"] == "+CoT (--metadata)"
    for run in (0, 1):  # a prompt can move a score: a warning, not a note
        assert "+CoT prompt" in flags(report, run)["prompt"].message and flags(report, run)["prompt"].level == WARN
    # M1_PROMPT=cot is recorded only in the docs: the samples tell
    write_run(tmp_path / "env", two_tasks(), model="org/model-c", docs={("m1_medqa", 0): {"prompt_variant": "cot"}})
    report, _ = build(tmp_path, tmp_path / "env")
    assert report.protocol.protocols[0].display()["prompt"] == "+CoT (samples) (MedQA); plain (GPQA)"


def test_scorer_version_1_is_flagged(tmp_path, caplog):
    write_run(tmp_path / "old", two_tasks(), task_version=1.0)
    write_run(tmp_path / "new", two_tasks(), model="org/model-b")
    with caplog.at_level(logging.WARNING, logger="m1_reports"):
        report, target = build(tmp_path, tmp_path / "old", tmp_path / "new")
    old = flags(report, 0)["scorer"]
    assert old.level == WARN and "scored by an older m1-eval scorer" in old.message
    assert "re-score or re-run" in old.message
    assert "scorer" not in flags(report, 1)
    assert report.protocol.protocols[0].display()["scorer"].startswith("m1 v1.0 (answer marker cut off")
    assert any("older m1-eval scorer" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert {d.field for d in report.protocol.differences} == {"scorer"}
    assert "scored by an older m1-eval scorer" in (target / "table1.md").read_text()


def test_a_sweep_is_one_row_with_its_axes_and_each_deviation_once(tmp_path):
    """Runs that differ only in budget and ignore rounds share a row; the axes are not differences; a deviation
    the runs share is stated once with them, a note apart from the warnings."""
    folders = []
    for index, (budget, ignore) in enumerate([(256, 0), (512, 0), (256, 1), (512, 1)]):
        folder = tmp_path / f"b{budget}_{ignore}"
        write_run(folder, two_tasks(budget=budget, ignore=ignore), model="UCSC-VLAA/m1-7B-23K",
                  gen_kwargs={"max_tokens_thinking": budget, "thinking_n_ignore": ignore},
                  date_id=f"2026-01-0{index + 1}T00-00-00.000001")  # fmt: skip
        folders.append(folder)
    write_run(tmp_path / "base", two_tasks(), model="org/base", gen_kwargs={"temperature": 0.6}, chat_template=None)
    report, target = build(tmp_path, *folders, tmp_path / "base")
    header = report.protocol
    rows = header.grouped_rows()
    assert [len(row.runs) for row in rows] == [4, 1]
    assert (rows[0].cells["budget"], rows[0].cells["ignore"]) == ("256, 512", "0, 1")
    assert rows[0].cells["max_tokens"] == "thinking budget + answer 1024" and not rows[0].flagged
    assert rows[1].flagged == {"temperature", "seed", "chat_template"}
    assert header.axes() == [("thinking budget", ["256", "512"]), ("ignore rounds", ["0", "1"])]
    assert {d.field for d in header.differences} == {"temperature", "max_tokens", "chat_template"}  # no axis
    groups = header.deviation_groups()
    assert [g.level for g in groups] == [WARN, WARN, WARN, INFO]  # warnings first
    note = groups[-1]
    assert note.field == "seed" and len(note.runs) == 4 and "no effect under greedy decoding" in note.message
    for text in ((target / "protocol.md").read_text(), unescape((target / "index.html").read_text())):
        assert text.count("no effect under greedy decoding") == 1
        assert "thinking budget 256, 512" in text and "ignore rounds 0, 1" in text
    markdown = (target / "protocol.md").read_text()
    assert "Sweep: thinking budget 256, 512 × ignore rounds 0, 1." in markdown
    assert markdown.index("that can move a score:") < markdown.index("Notes (no effect on the scores):")
    assert sum(1 for line in markdown.splitlines() if line.startswith("| ") and "m1-vllm" in line) == 2
    # a sweep of the same protocol: "all 4 runs", one line
    report, target = build(tmp_path / "only", *folders)
    assert [g.runs for g in report.protocol.deviation_groups()] == [report.loaded.labels]
    assert "- all 4 runs: seed 1234 (m1-vllm default) instead of the paper's 42" in (target / "protocol.md").read_text()


def test_published_rows_carry_their_notes(tmp_path):
    write_run(tmp_path / "a", two_tasks())
    report = build_report(
        [tmp_path / "a"],
        ReportOptions(references=["HuatuoGPT-o1-8B", "m1-7B-23K", "UltraMedical-8B-3.1"], n_boot=200, plots=False),
    )
    write_report(report, tmp_path / "rep")
    huatuo = report.table1.row_notes("HuatuoGPT-o1-8B")
    assert len(huatuo) == 1 and "temperature 0.5 and top_p 0.9" in huatuo[0] and "greedy" in huatuo[0]
    assert "budget forcing" in report.table1.row_notes("m1-7B-23K")[0]
    assert report.table1.row_notes("UltraMedical-8B-3.1") == [] and report.table1.row_notes("model-a") == []
    assert set(report.protocol.reference_notes) == {"HuatuoGPT-o1-8B", "m1-7B-23K"}
    page = unescape((tmp_path / "rep" / "index.html").read_text())
    assert f'title="{huatuo[0]}">HuatuoGPT-o1-8B' in page  # on the Table 1 row
    assert "Published rows, their own protocol" in page
    markdown = (tmp_path / "rep" / "table1.md").read_text()
    assert f"- HuatuoGPT-o1-8B: {huatuo[0]}" in markdown


def test_console_prints_the_header(tmp_path, capsys):
    write_run(tmp_path / "out" / "a", small_table1(0.01, seed=1), chat_template=None)
    assert main([str(tmp_path / "out" / "a"), "--out", str(tmp_path / "rep"), "--bootstrap", "200", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "Protocol" in out and "thinking budget" in out and "⚠ off" in out and "no chat template" in out


@pytest.mark.parametrize("gen_kwargs", ["max_tokens_thinking=300,temperature=0.5", {"max_tokens_thinking": 300}])
def test_gen_kwargs_string_or_dict(tmp_path, gen_kwargs):
    write_run(tmp_path / "a", two_tasks(budget=300), gen_kwargs=gen_kwargs)
    report, _ = build(tmp_path, tmp_path / "a")
    cells = report.protocol.protocols[0].display()
    assert cells["budget"] == "300"
    assert cells["temperature"] == ("0.5 (sampled)" if isinstance(gen_kwargs, str) else "0 (greedy)")
