"""Finding runs, naming them, and every kind of bad input: reported by file and line, nothing written."""

from __future__ import annotations

import json

import pytest

from m1_reports import ReportInputError, ReportOptions, build_report, load
from m1_reports.cli import main
from m1_reports.naming import run_args, run_label
from tests.report_fixtures import make_truth, small_table1, write_run

OPTIONS = ReportOptions(references=["none"], n_boot=200)


def one_task(n: int = 30, acc: float = 0.5, seed: int = 0, **kwargs) -> dict:
    return {"m1_medqa": make_truth(n, acc, seed=seed, **kwargs)}


def cli_fails(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------------------ finding runs


def test_output_folder_or_model_folder_or_results_file(tmp_path):
    run = write_run(tmp_path / "out", one_task(), model="org/model-a")
    for path in (tmp_path / "out", run.folder, run.results):
        loaded = load([path])
        assert [r.path for r in loaded.runs] == [run.results]
    # given twice (folder and its subfolder): one run
    assert len(load([tmp_path / "out", run.folder]).runs) == 1


def test_several_results_files_in_one_folder_are_several_runs(tmp_path):
    out = tmp_path / "out"
    write_run(out, one_task(acc=0.4), date_id="2026-01-01T00-00-00.000001", gen_kwargs={"max_tokens_thinking": 512})
    write_run(out, one_task(acc=0.6), date_id="2026-01-02T00-00-00.000001", gen_kwargs={"max_tokens_thinking": 2048})
    loaded = load([out])
    assert loaded.labels == ["model-a (budget 512)", "model-a (budget 2048)"]
    acc = loaded.run_tasks.set_index("run")["acc"]
    assert acc["model-a (budget 512)"] == pytest.approx(0.4) and acc["model-a (budget 2048)"] == pytest.approx(0.6)


def test_same_model_and_gen_kwargs_get_numbered_labels(tmp_path):
    write_run(tmp_path / "x", one_task(), model="org/m", date_id="2026-01-01T00-00-00.000001")
    write_run(tmp_path / "x", one_task(), model="org/m", date_id="2026-01-02T00-00-00.000001")
    assert load([tmp_path / "x"]).labels == ["m", "m #2"]


def test_labels_override_and_must_match_the_runs(tmp_path):
    write_run(tmp_path / "a", one_task(), model="org/a")
    write_run(tmp_path / "b", one_task(), model="org/b")
    loaded = load([tmp_path / "a", tmp_path / "b"], options=None)
    assert loaded.labels == ["a", "b"]
    from m1_reports.join import LoadOptions

    assert load([tmp_path / "a", tmp_path / "b"], LoadOptions(labels=["A", "B"])).labels == ["A", "B"]
    with pytest.raises(ReportInputError, match="1 --label value for 2 runs"):
        load([tmp_path / "a", tmp_path / "b"], LoadOptions(labels=["A"]))


def test_gen_kwargs_string_or_dict_or_task_config():
    assert run_args("max_tokens_thinking=4096,thinking_n_ignore=2,temperature=0.6") == {
        "max_tokens_thinking": 4096,
        "thinking_n_ignore": 2,
        "temperature": 0.6,
    }
    assert run_args("thinking_n_ignore_str=' Wait, ',max_tokens_thinking=auto") == {
        "thinking_n_ignore_str": " Wait, ",
        "max_tokens_thinking": "auto",
    }
    assert run_args(None) == {} and run_args({"a": 1}) == {"a": 1}
    assert run_label("UCSC-VLAA/m1-7B-23K", {"max_tokens_thinking": 4096}) == "m1-7B-23K (budget 4096)"
    assert run_label("/models/m1-32B-1K/", {"max_tokens_thinking": "auto", "thinking_n_ignore": 1}) == (
        "m1-32B-1K (budget auto, ignore 1)"
    )


def test_budget_from_the_task_config_when_not_on_the_command_line(tmp_path):
    run = write_run(tmp_path / "a", one_task(), model="org/m", gen_kwargs=None)
    data = json.loads(run.results.read_text())
    data["configs"]["m1_medqa"]["generation_kwargs"]["max_tokens_thinking"] = 300
    run.results.write_text(json.dumps(data))
    assert load([tmp_path / "a"]).labels == ["m (budget 300)"]


def test_unknown_tasks_are_extra_columns(tmp_path):
    tasks = {"m1_medqa": make_truth(20, 0.5, seed=1), "my_custom_task": make_truth(25, 0.4, seed=2)}
    write_run(tmp_path / "a", tasks)
    report = build_report([tmp_path / "a"], OPTIONS)
    assert report.table1.columns[-1] == "my_custom_task"
    assert report.table1.value.iloc[0]["my_custom_task"] == pytest.approx(0.4)
    assert report.table1.is_partial_avg(report.table1.rows[0])  # Avg over one of ten benchmarks


def test_missing_generation_records_leave_token_columns_empty(tmp_path):
    write_run(tmp_path / "a", one_task(), gen_kwargs={"max_tokens_thinking": 100}, records=False)
    loaded = load([tmp_path / "a"])
    assert loaded.samples["thinking_tokens"].isna().all()


def test_missing_samples_files_use_the_results(tmp_path):
    run = write_run(tmp_path / "a", one_task(acc=0.7))
    next(run.folder.glob("samples_*.jsonl")).unlink()
    report = build_report([tmp_path / "a"], OPTIONS)
    assert report.table1.value.iloc[0]["MedQA"] == pytest.approx(0.7)
    assert any("missing" in w for w in report.warnings)


# --------------------------------------------------------------------------------------------------- bad input


def test_folder_without_results(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ReportInputError) as error:
        load([empty])
    assert str(error.value).startswith(f"{empty}: no lm-eval results here")
    err = cli_fails(capsys, [str(empty), "--out", str(tmp_path / "rep")])
    assert err.count("\n") == 1 and "--output_path" in err
    assert not (tmp_path / "rep").exists()


def test_missing_path(tmp_path, capsys):
    err = cli_fails(capsys, [str(tmp_path / "nope"), "--out", str(tmp_path / "rep")])
    assert "no such file or folder" in err


def test_truncated_jsonl_line_names_file_and_line(tmp_path, capsys):
    run = write_run(tmp_path / "a", one_task(n=10))
    samples = next(run.folder.glob("samples_*.jsonl"))
    lines = samples.read_text().splitlines(keepends=True)
    lines[6] = lines[6][: len(lines[6]) // 2] + "\n"  # a line cut halfway (disk full, killed writer)
    samples.write_text("".join(lines))
    with pytest.raises(ReportInputError) as error:
        load([tmp_path / "a"])
    assert error.value.path == samples and error.value.line == 7
    assert f"{samples}:7: line is not valid JSON" in str(error.value)
    err = cli_fails(capsys, [str(tmp_path / "a"), "--out", str(tmp_path / "rep")])
    assert f"{samples}:7:" in err and not (tmp_path / "rep").exists()


def test_truncated_last_line_of_generation_records(tmp_path):
    run = write_run(tmp_path / "a", one_task(n=5))
    records = next(run.folder.glob("m1_generations_*.jsonl"))
    text = records.read_text()
    records.write_text(text[: len(text) - 40])
    with pytest.raises(ReportInputError, match=rf"{records.name}:5: line is not valid JSON"):
        load([tmp_path / "a"])


def test_every_bad_file_is_reported(tmp_path, capsys):
    for name in ("a", "b"):
        run = write_run(tmp_path / name, one_task(n=5), model=f"org/{name}")
        samples = next(run.folder.glob("samples_*.jsonl"))
        samples.write_text(samples.read_text() + "{not json\n")
    err = cli_fails(capsys, [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rep")])
    assert err.count("line is not valid JSON") == 2 and ":6:" in err


def test_results_from_another_harness_version(tmp_path, capsys):
    run = write_run(tmp_path / "a", one_task(), version="0.4.2")
    with pytest.raises(ReportInputError) as error:
        load([tmp_path / "a"])
    line = next(i for i, text in enumerate(run.results.read_text().splitlines(), 1) if '"lm_eval_version"' in text)
    assert error.value.path == run.results and error.value.line == line
    assert "written by lm-eval 0.4.2" in str(error.value) and "--allow-other-versions" in str(error.value)
    cli_fails(capsys, [str(tmp_path / "a"), "--out", str(tmp_path / "rep")])
    assert not (tmp_path / "rep").exists()
    # the user may insist
    assert main([str(tmp_path / "a"), "--out", str(tmp_path / "rep"), "--allow-other-versions", "-q"]) == 0


def test_results_without_version_or_not_json(tmp_path):
    run = write_run(tmp_path / "a", one_task())
    data = json.loads(run.results.read_text())
    del data["lm_eval_version"]
    run.results.write_text(json.dumps(data))
    with pytest.raises(ReportInputError, match="has no lm_eval_version"):
        load([tmp_path / "a"])
    run.results.write_text('{\n  "results": {\n    "m1_medqa": {\n')
    with pytest.raises(ReportInputError) as error:
        load([tmp_path / "a"])
    assert error.value.path == run.results and error.value.line == 4 and "not valid JSON" in str(error.value)


def test_runs_that_disagree_on_documents(tmp_path, capsys):
    write_run(tmp_path / "a", one_task(n=30), model="org/a")
    shifted = make_truth(30, 0.5, seed=3)
    shifted.doc_offset = 2  # doc ids 2..31: 0 and 1 missing, 30 and 31 extra
    b = write_run(tmp_path / "b", {"m1_medqa": shifted}, model="org/b")
    with pytest.raises(ReportInputError) as error:
        load([tmp_path / "a", tmp_path / "b"])
    problems = error.value.lines()
    b_samples = next(b.folder.glob("samples_*.jsonl"))
    assert problems[0].startswith(f"{b_samples}:29: doc_id 30 of m1_medqa was not evaluated by run 'a'")
    assert any("doc_id 0 of m1_medqa is missing" in p for p in problems)
    err = cli_fails(capsys, [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rep")])
    assert "--allow-mismatch" in err and not (tmp_path / "rep").exists()
    # same doc ids, different documents (another prompt/data version)
    c = write_run(tmp_path / "c", one_task(n=30), model="org/c")
    c_samples = next(c.folder.glob("samples_*.jsonl"))
    rows = [json.loads(line) for line in c_samples.read_text().splitlines()]
    rows[4]["doc_hash"] = "0" * 64
    c_samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ReportInputError) as error:
        load([tmp_path / "a", tmp_path / "c"])
    assert str(error.value).startswith(f"{c_samples}:5: doc_id 4 of m1_medqa is a different document")
    # --allow-mismatch: warn, pair the common documents
    report = build_report([tmp_path / "a", tmp_path / "b"], ReportOptions(references=["none"], allow_mismatch=True))
    assert report.paired.iloc[0]["n"] == 28
    assert any("not evaluated by run 'a'" in w for w in report.warnings)


def test_duplicate_doc_ids_in_one_samples_file(tmp_path):
    run = write_run(tmp_path / "a", one_task(n=5))
    samples = next(run.folder.glob("samples_*.jsonl"))
    samples.write_text(samples.read_text() * 2)
    with pytest.raises(ReportInputError, match=r":6: doc_id 0 appears again \(first at line 1\)"):
        load([tmp_path / "a"])


def test_bad_options(tmp_path, capsys):
    write_run(tmp_path / "a", one_task())
    assert "neither a run nor a row" in cli_fails(capsys, [str(tmp_path / "a"), "--baseline", "GPT-9", "-q"])
    assert "ambiguous" in cli_fails(capsys, [str(tmp_path / "a"), "--baseline", "HuatuoGPT-o1-7", "-q"])
    assert "matches no row" in cli_fails(capsys, [str(tmp_path / "a"), "--reference", "Nothing-*", "-q"])
    assert "not a run" in cli_fails(capsys, [str(tmp_path / "a"), "--pair", "x", "y", "-q"])


def test_refuses_to_replace_a_foreign_folder(tmp_path, capsys):
    write_run(tmp_path / "a", one_task())
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    err = cli_fails(capsys, [str(tmp_path / "a"), "--out", str(foreign), "-q"])
    assert "not written by m1-report" in err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_small_table1_runs_are_read(tmp_path):
    write_run(tmp_path / "a", small_table1(0.01))
    loaded = load([tmp_path / "a"])
    assert len(loaded.run_tasks) == 10


def test_cot_variants_fill_the_table1_columns(tmp_path):
    """A run of the +CoT tasks (m1_table1_cot) is named "+CoT" and fills the same columns; a run with both
    variants of a task shows the CoT one as an extra column."""
    cot = {f"{task}_cot": truth for task, truth in small_table1(0.01, seed=3).items()}
    write_run(tmp_path / "cot", cot, model="Qwen/Qwen2.5-7B-Instruct", records=False)
    both = {"m1_medqa": make_truth(20, 0.5, seed=1), "m1_medqa_cot": make_truth(20, 0.75, seed=2)}
    write_run(tmp_path / "both", both, model="org/both", records=False)
    report = build_report([tmp_path / "cot", tmp_path / "both"], OPTIONS)
    assert report.loaded.labels == ["Qwen2.5-7B-Instruct+CoT", "both"]
    table = report.table1
    assert table.value.at["Qwen2.5-7B-Instruct+CoT", "MedQA"] == pytest.approx(cot["m1_medqa_cot"].acc)
    assert not table.is_partial_avg("Qwen2.5-7B-Instruct+CoT")
    assert table.value.at["both", "MedQA"] == pytest.approx(0.5)
    assert table.value.at["both", "MedQA (CoT)"] == pytest.approx(0.75)
    assert table.columns[-1] == "MedQA (CoT)"


def test_progress_counts_every_byte_of_the_streamed_files(tmp_path):
    run = write_run(tmp_path / "a", small_table1(0.01, seed=1))

    class Sink:
        total = done = finished = 0

        def start(self, total_bytes):
            self.total = total_bytes

        def advance(self, n_bytes):
            self.done += n_bytes

        def finish(self):
            self.finished += 1

    sink = Sink()
    load([tmp_path / "a"], progress=sink)
    size = sum(p.stat().st_size for p in run.folder.glob("*.jsonl"))
    assert sink.total == sink.done == size and sink.finished == 1


def test_baseline_resolution(tmp_path):
    write_run(tmp_path / "a", one_task(), model="UCSC-VLAA/m1-7B-23K", gen_kwargs={"max_tokens_thinking": 4096})
    base = lambda name: build_report([tmp_path / "a"], ReportOptions(references=["none"], baseline=name)).table1  # noqa: E731
    assert base("m1-7B-23K").baseline == "m1-7B-23K"  # the paper row: an exact name beats a run's prefix
    assert base("m1-7B-23K").sources[-1] == "paper"
    assert base("m1-7b-23k (BUDGET 4096)").baseline == "m1-7B-23K (budget 4096)"
    assert base("m1-7B-23K (b").baseline == "m1-7B-23K (budget 4096)"  # a unique prefix
    assert base("paper:huatuogpt-o1-8b").baseline == "HuatuoGPT-o1-8B"
