"""Atomic report folders: everything is rendered into a temporary folder beside the target, then swapped in.

A failure at any point leaves the target as it was (absent, or the previous report) and removes the
temporary folder.  A target that exists but was not written by m1-report is never replaced.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from m1_reports.errors import ReportInputError

logger = logging.getLogger(__name__)

MARKER = ".m1-report"


def _check_target(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ReportInputError("exists and is not a folder", path=target, hint="choose another --out")
    if any(target.iterdir()) and not (target / MARKER).exists():
        raise ReportInputError(
            "exists and was not written by m1-report; refusing to replace it",
            path=target,
            hint="choose another --out or --name, or remove the folder",
        )


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``target`` in one rename."""
    target = Path(target)
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        (staging / MARKER).write_text("written by m1-report\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
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
