"""Atomic report folders: everything is rendered into a temporary folder beside the target, then swapped in.

A failure at any point leaves the target as it was (absent, or the previous report) and removes the
temporary folder.  A target that exists but was not written by m1-report is never replaced.  An ``OSError``
on the way (a folder that cannot be created, a full disk, no permission) becomes a
:class:`~m1_eval.errors.ReportInputError`: one line naming the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from m1_eval.errors import ReportInputError

MARKER = ".m1-report"


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ReportInputError("exists and is not a folder", path=target, hint="choose another --output_path")
    if any(target.iterdir()) and not (target / MARKER).exists():
        raise ReportInputError(
            "exists and was not written by m1-report; refusing to replace it",
            path=target,
            hint="choose another --output_path or --name, or remove the folder",
        )


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` in one rename.  Every ``OSError``, also
    one raised while the caller writes into the folder, leaves as a :class:`ReportInputError`."""
    target = Path(target)
    try:
        _check_target(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as error:
        raise ReportInputError.from_os_error(error) from error
    try:
        yield staging
        (staging / MARKER).write_text("written by m1-report\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        _swap(staging, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise ReportInputError.from_os_error(error) from error
        raise


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``; an old ``target`` is moved aside first and removed after."""
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
    shutil.rmtree(old, ignore_errors=True)


def write_text(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path
