"""Atomic report folders: everything is rendered into a temporary folder beside the target, then swapped in.

A failure at any point leaves the target as it was (absent, or the previous report) and removes the
temporary folder.  What the report writes never touches what it reads (:func:`check_output`, run before any
samples file is read and again before writing):

* the output folder must not contain, or be inside, a folder of the runs read (paths resolved), so a run moved
  into an old report folder, or a report aimed at a run's folder, is refused;
* it must not be a symbolic link (the swap would replace the link, not the folder it points to);
* an existing folder is replaced only when it is an old report holding nothing but the files m1-report wrote
  there: the marker file :data:`MARKER` lists them.  Anything else in it (a run, a note, a subfolder) is
  refused, naming the first such entry; the old report's files are then removed one by one, never a tree.

Every ``OSError`` on the way (a folder that cannot be created, a full disk, no permission) becomes a
:class:`~m1_base.errors.ReportInputError`: one line naming the path.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from m1_base.errors import ReportInputError
from m1_reports.regular_files import open_regular

logger = logging.getLogger(__name__)

MARKER = ".m1-report"
MARKER_HEADER = "written by m1-report"
MARKER_LIST = "files:"
# What m1-report wrote before its marker listed the files (a marker of just MARKER_HEADER): such a report is
# replaced when it holds these files only.
LEGACY_FILES = frozenset(
    {
        "table1.md", "table1.csv", "table1.tex", "protocol.md", "protocol.csv", "paired.csv", "paired.md",
        "budget_scaling.csv", "budget_scaling.md", "budget_scaling.png", "budget_scaling.svg", "scoring.csv",
        "scoring.md", "runs.csv", "run_tasks.csv", "leaderboard.json", "leaderboard.csv", "index.html",
        "samples.html",
    }
)  # fmt: skip
_MARKER_MAX_BYTES = 1 << 16
_HINT = "choose another --output_path or --name"


def marker_text(names: Iterable[str]) -> str:
    """The marker file: a header line, then the files m1-report wrote into the folder, one a line."""
    return f"{MARKER_HEADER}\n{MARKER_LIST}\n" + "".join(f"{name}\n" for name in sorted(names))


def written_files(folder: Path) -> frozenset[str] | None:
    """The files the marker of ``folder`` says m1-report wrote (the marker included); None when the folder has
    no marker that m1-report wrote (none, not a regular file, not its text)."""
    marker = folder / MARKER
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode):
            return None
        with open_regular(marker) as handle:
            text = handle.read(_MARKER_MAX_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError, ReportInputError):
        return None
    lines = text.splitlines()
    if len(text) > _MARKER_MAX_BYTES or not lines or lines[0] != MARKER_HEADER:
        return None
    if len(lines) == 1:
        return LEGACY_FILES | {MARKER}
    if lines[1] != MARKER_LIST:
        return None
    return frozenset(lines[2:]) | {MARKER}


def _foreign_entry(folder: Path, wrote: frozenset[str]) -> Path | None:
    """The first entry of ``folder`` (by name) that is not a regular file m1-report wrote there."""
    for entry in sorted(folder.iterdir()):
        if entry.name not in wrote or not stat.S_ISREG(os.lstat(entry).st_mode):
            return entry
    return None


def check_output(target: Path, run_folders: Iterable[Path] = ()) -> None:
    """Refuse an output folder that would touch what the report reads or what m1-report did not write: one line
    (a :class:`ReportInputError`) naming the cause and the fix.  Cheap: nothing is read but folder listings and
    the marker."""
    target = Path(target)
    try:
        if target.is_symlink():
            raise ReportInputError(
                f"is a symbolic link (to {os.readlink(target)}); m1-report would replace the link, not the folder "
                "it points to",
                path=target,
                hint=f"give the folder itself (-o {os.path.realpath(target)}) or {_HINT}",
            )
        resolved = target.resolve()
        for folder in run_folders:
            run = Path(folder).resolve()
            if run == resolved or run.is_relative_to(resolved):
                raise ReportInputError(
                    f"contains the run folder {folder}, which this report reads; writing the report would replace it",
                    path=target,
                    hint=f"{_HINT} outside the runs",
                )
            if resolved.is_relative_to(run):
                raise ReportInputError(
                    f"is inside the run folder {folder}, which this report reads",
                    path=target,
                    hint=f"{_HINT} outside the runs",
                )
        if not target.exists():
            return
        if not target.is_dir():
            raise ReportInputError("exists and is not a folder", path=target, hint=_HINT)
        if not any(target.iterdir()):
            return
        wrote = written_files(target)
        if wrote is None:
            raise ReportInputError(
                "exists and was not written by m1-report; refusing to replace it",
                path=target,
                hint=f"{_HINT}, or remove the folder",
            )
        foreign = _foreign_entry(target, wrote)
        if foreign is not None:
            what = "folder" if foreign.is_dir() and not foreign.is_symlink() else "file"
            raise ReportInputError(
                f"is an old report that holds the {what} {foreign.name}, which m1-report did not write; refusing "
                "to replace it",
                path=target,
                hint=f"move {foreign} out of the folder, or {_HINT}",
            )
    except OSError as error:
        raise ReportInputError.from_os_error(error) from error
    except RuntimeError as error:  # Path.resolve on a loop of symbolic links
        raise ReportInputError(str(error), path=target, hint=_HINT) from None


@contextmanager
def atomic_directory(target: Path, run_folders: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` in one rename, its marker listing the
    files written into it.  ``target`` is checked first (:func:`check_output`, against ``run_folders``, the
    folders of the runs the report read).  Every ``OSError``, also one raised while the caller writes into the
    folder, leaves as a :class:`ReportInputError`."""
    target = Path(target)
    check_output(target, run_folders)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as error:
        raise ReportInputError.from_os_error(error) from error
    try:
        yield staging
        names = [entry.name for entry in staging.iterdir()]
        (staging / MARKER).write_text(marker_text(names), encoding="utf-8")
        os.chmod(staging, 0o755)
        _swap(staging, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)  # the temporary folder made above: only what was written now
        if isinstance(error, OSError):
            raise ReportInputError.from_os_error(error) from error
        raise


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``; an old report at ``target`` is moved aside first, and its files removed
    after."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)  # put the previous report back
        raise
    _remove_old_report(old)


def _remove_old_report(old: Path) -> None:
    """Remove the files of an old report that its marker lists, then the folder; anything else that appeared in
    it since the check is left there, with a WARNING."""
    try:
        wrote = written_files(old) or frozenset()
        for entry in old.iterdir():
            if entry.name in wrote and entry.name != MARKER and stat.S_ISREG(os.lstat(entry).st_mode):
                entry.unlink()
        (old / MARKER).unlink(missing_ok=True)
        old.rmdir()
    except OSError as error:  # the new report is in place: what is left of the old one is only reported
        logger.warning(
            "%s: the previous report is left here (%s); remove it when you have looked at it",
            old,
            error.strerror or error,
        )


def write_text(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path
