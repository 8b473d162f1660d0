"""Opening the report's input files: regular files only.

A FIFO, socket or device in place of a results, samples or records file would block ``open`` or ``read``
forever (a FIFO without a writer) or read something that is not lm-eval output; every input file is therefore
checked with ``stat`` before it is opened, opened without blocking, and checked again on the open descriptor
(``fstat``), so that what is read is the regular file that was checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from m1_base.errors import ReportInputError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def kind_of(mode: int) -> str:
    """What a non-regular file is, for the error line: ``a FIFO (named pipe)``, ``a socket``, ..."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: Path, mode: int) -> ReportInputError:
    return ReportInputError(
        f"is {kind_of(mode)}, not a regular file; m1-report reads only regular files",
        path=path,
        hint="put the file lm_eval wrote in its place, or remove it",
    )


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (symbolic links followed); anything else, and
    every ``OSError``, is a one-line :class:`ReportInputError` naming the path."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode)
        descriptor = os.open(path, _FLAGS)
    except OSError as error:
        raise ReportInputError(f"cannot read ({error.strerror or error})", path=path) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):  # replaced between the two looks
            raise not_regular(path, mode)
        if _FLAGS & getattr(os, "O_NONBLOCK", 0) and hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
