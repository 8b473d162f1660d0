"""The report's output folder never touches its inputs: a folder that holds or lies in a run read, a symbolic
link, and an old report holding files m1-report did not write are refused (one line, exit 2), before any samples
file is read; a run is never deleted."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from m1_reports import ReportInputError, ReportOptions, build_report, write_report
from m1_reports import join as join_module
from m1_reports.cli import main
from m1_reports.write_folder import LEGACY_FILES, MARKER, MARKER_HEADER, check_output, written_files
from tests.report_fixtures import make_truth, write_run


def one_task(seed: int = 1) -> dict:
    return {"m1_medqa": make_truth(20, 0.5, seed=seed)}


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (relative path -> bytes, None for a folder): to compare before and after."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def refused(capsys, argv: list[str]) -> str:
    """Run m1-report, expect exit code 2 and exactly one line on stderr (no traceback); return the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def forbid_samples(monkeypatch) -> None:
    """From now on, fail the test if a samples file is read: refusals come before the long part."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a samples file was read before the output folder was checked")

    monkeypatch.setattr(join_module, "read_samples", forbidden)


@pytest.fixture
def no_samples_read(monkeypatch):
    forbid_samples(monkeypatch)


def test_a_run_moved_into_its_old_report_is_refused_and_survives(tmp_path, monkeypatch, capsys):
    """The issue's sequence: m1-report run4 -o rep; mv run4 rep/myrun; m1-report rep/myrun -o rep."""
    monkeypatch.chdir(tmp_path)
    write_run(Path("run4"), one_task())
    assert main(["run4", "-o", "rep", "-q", "--reference", "none", "--bootstrap", "200"]) == 0
    shutil.move("run4", "rep/myrun")
    before = tree(Path("rep"))
    assert any(name.startswith("myrun/") and name.endswith(".jsonl") for name in before)

    forbid_samples(monkeypatch)
    line = refused(capsys, ["rep/myrun", "-o", "rep", "-q"])
    assert line.startswith("m1-report: error: rep: contains the run folder rep/myrun/")
    assert "choose another --output_path or --name outside the runs" in line
    assert tree(Path("rep")) == before  # the run and the old report, byte for byte
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep.")] == []


def test_output_inside_a_run_folder_is_refused(tmp_path, capsys, no_samples_read):
    run = write_run(tmp_path / "out", one_task())
    before = tree(tmp_path / "out")
    for target in (run.folder / "rep", run.folder, tmp_path / "out", run.folder / "deeper" / "rep"):
        line = refused(capsys, [str(tmp_path / "out"), "-o", str(target), "-q"])
        kind = "is inside" if target not in (run.folder, tmp_path / "out") else "contains"
        assert f"{target}: {kind} the run folder {run.folder}" in line
    assert tree(tmp_path / "out") == before  # nothing created, nothing removed


def test_the_default_output_folder_is_checked_too(tmp_path, monkeypatch, capsys, no_samples_read):
    """Run from inside a run folder, the default reports/<labels>/ would lie in it."""
    run = write_run(tmp_path / "out", one_task())
    monkeypatch.chdir(run.folder)
    line = refused(capsys, [".", "-q"])
    assert "reports/model-a: is inside the run folder ." in line
    assert not (run.folder / "reports").exists()


def test_a_run_reached_through_a_symlink_is_found_by_its_real_path(tmp_path, capsys, no_samples_read):
    run = write_run(tmp_path / "real", one_task())
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    line = refused(capsys, [str(tmp_path / "alias"), "-o", str(run.folder / "rep"), "-q"])
    assert f"is inside the run folder {tmp_path / 'alias' / run.folder.name}" in line and run.folder.exists()


def test_a_symlink_as_output_is_refused_and_left_as_it_is(tmp_path, monkeypatch, capsys):
    write_run(tmp_path / "a", one_task())
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    write_report(report, tmp_path / "old-report")
    forbid_samples(monkeypatch)
    before = tree(tmp_path / "old-report")
    (tmp_path / "link").symlink_to(tmp_path / "old-report")
    line = refused(capsys, [str(tmp_path / "a"), "-o", str(tmp_path / "link"), "-q"])
    assert f"{tmp_path / 'link'}: is a symbolic link (to {tmp_path / 'old-report'})" in line
    assert f"give the folder itself (-o {tmp_path / 'old-report'})" in line
    assert (tmp_path / "link").is_symlink() and tree(tmp_path / "old-report") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no hidden .link.old-* left
    # a dangling link too
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert "is a symbolic link" in refused(capsys, [str(tmp_path / "a"), "-o", str(tmp_path / "dangling"), "-q"])
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("foreign", "what"),
    [("notes.txt", "file notes.txt"), ("myrun/", "folder myrun"), ("link", "file link")],
)
def test_an_old_report_with_a_foreign_entry_is_refused(tmp_path, monkeypatch, capsys, foreign, what):
    write_run(tmp_path / "a", one_task())
    target = tmp_path / "rep"
    write_report(build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200)), target)
    forbid_samples(monkeypatch)
    if foreign.endswith("/"):
        (target / foreign).mkdir()
        (target / foreign / "results_x.json").write_text("{}")
    elif foreign == "link":
        (target / foreign).symlink_to(tmp_path / "a")
    else:
        (target / foreign).write_text("mine")
    before = tree(target)
    line = refused(capsys, [str(tmp_path / "a"), "-o", str(target), "-q"])
    assert f"{target}: is an old report that holds the {what}, which m1-report did not write" in line
    assert f"move {target / foreign.rstrip('/')} out of the folder" in line
    assert tree(target) == before


def test_a_listed_name_that_is_now_a_folder_is_foreign(tmp_path, capsys):
    write_run(tmp_path / "a", one_task())
    target = tmp_path / "rep"
    write_report(build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200)), target)
    (target / "table1.md").unlink()
    (target / "table1.md").mkdir()
    assert "holds the folder table1.md" in refused(capsys, [str(tmp_path / "a"), "-o", str(target), "-q"])


def test_the_marker_lists_the_files_written_and_a_rewrite_removes_only_those(tmp_path, caplog):
    write_run(tmp_path / "a", one_task())
    target = tmp_path / "rep"
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    files = write_report(report, target)
    assert written_files(target) == {path.name for path in files} | {MARKER}
    assert (target / MARKER).read_text().splitlines()[0] == MARKER_HEADER
    write_report(report, target)  # an old report of nothing but its own files: replaced
    assert sorted(p.name for p in target.iterdir()) == sorted({path.name for path in files} | {MARKER})
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep.")] == []
    assert "left here" not in caplog.text


def test_a_report_of_an_older_m1_report_is_replaced_by_its_known_files(tmp_path, capsys):
    """Before the marker listed its files it held one line; such a report holds m1-report's file names only."""
    write_run(tmp_path / "a", one_task())
    target = tmp_path / "rep"
    target.mkdir()
    (target / MARKER).write_text(f"{MARKER_HEADER}\n")
    for name in sorted(LEGACY_FILES)[:5]:
        (target / name).write_text("old")
    # without the HTML pages: the files a report of that time wrote (no scripts)
    args = [str(tmp_path / "a"), "-o", str(target), "-q", "--reference", "none", "--bootstrap", "200", "--no-html"]
    assert main(args) == 0
    assert (target / "table1.csv").read_text() != "old" and "files:" in (target / MARKER).read_text()
    (target / "mine.txt").write_text("x")
    (target / MARKER).write_text(f"{MARKER_HEADER}\n")
    assert "holds the file mine.txt" in refused(capsys, [str(tmp_path / "a"), "-o", str(target), "-q"])


@pytest.mark.parametrize(
    "marker", [None, "something else\n", "written by m1-report\nnot the list\ntable1.md\n", "folder"]
)
def test_a_folder_without_m1_reports_marker_is_not_replaced(tmp_path, capsys, no_samples_read, marker):
    write_run(tmp_path / "a", one_task())
    target = tmp_path / "mine"
    target.mkdir()
    (target / "table1.md").write_text("my own table")
    if marker == "folder":
        (target / MARKER).mkdir()
    elif marker is not None:
        (target / MARKER).write_text(marker)
    line = refused(capsys, [str(tmp_path / "a"), "-o", str(target), "-q"])
    assert f"{target}: exists and was not written by m1-report; refusing to replace it" in line
    assert (target / "table1.md").read_text() == "my own table"


def test_an_empty_folder_and_a_new_folder_are_written(tmp_path):
    write_run(tmp_path / "a", one_task())
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "new" / "nested"):
        write_report(report, target)
        assert (target / "table1.csv").exists() and written_files(target) is not None


def test_output_beside_the_runs_is_fine(tmp_path, monkeypatch):
    """m1-report out/sweep/budget_* -o out/sweep-report (the README's sweep): beside the runs, not in them."""
    monkeypatch.chdir(tmp_path)
    write_run(Path("out/sweep/budget_512"), one_task(1), gen_kwargs={"max_tokens_thinking": 512})
    write_run(Path("out/sweep/budget_1024"), one_task(2), gen_kwargs={"max_tokens_thinking": 1024})
    argv = ["out/sweep/budget_512", "out/sweep/budget_1024", "-o", "out/sweep-report", "-q", "--reference", "none"]
    assert main([*argv, "--bootstrap", "200"]) == 0
    assert (tmp_path / "out/sweep-report/table1.md").exists()


def test_write_report_checks_again(tmp_path):
    """The library's write_report refuses a folder holding a run too (the check of build_report may be old)."""
    run = write_run(tmp_path / "a", one_task())
    report = build_report([tmp_path / "a"], ReportOptions(references=["none"], n_boot=200))
    before = tree(tmp_path / "a")
    for target in (tmp_path / "a", run.folder / "rep"):
        with pytest.raises(ReportInputError, match="the run folder"):
            write_report(report, target)
    assert tree(tmp_path / "a") == before


def test_build_report_checks_its_output_before_reading_samples(tmp_path, no_samples_read):
    run = write_run(tmp_path / "a", one_task())
    with pytest.raises(ReportInputError, match="is inside the run folder"):
        build_report([tmp_path / "a"], ReportOptions(references=["none"]), output=run.folder / "rep")
    with pytest.raises(ReportInputError, match="contains the run folder"):
        build_report([tmp_path / "a"], ReportOptions(references=["none"]), output=lambda labels: tmp_path)


def test_check_output_alone(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportInputError, match="exists and is not a folder"):
        check_output(tmp_path / "file")
    check_output(tmp_path / "absent", [tmp_path / "elsewhere"])  # nothing to say
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    with pytest.raises(ReportInputError, match="symbolic link"):
        check_output(loop)
