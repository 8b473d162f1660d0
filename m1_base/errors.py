"""Every error a user can cause and fix, in one tree (as httpx keeps its exceptions in ``httpx._exceptions``).

::

    ValueError
    └── M1UserError                 bad arguments, missing data, bad files: one line naming the cause and the fix
        ├── GenKwargsError          a --gen_kwargs value the budget-forcing controller cannot use
        ├── ModelArgsError          a --model_args value (or a model/tokenizer) an m1 model cannot use
        ├── M1DataError             the evaluation data (missing file or source, bad record, md5, offline)
        ├── M1PromptError           an unknown prompt variant (task config, --metadata or M1_PROMPT)
        ├── SweepError              an m1-sweep argument
        ├── CommandError            a command m1-eval ran for the user (lm_eval, m1-report) failed
        ├── ServerError             m1-server: no server of the fleet is left (names the server, request, error)
        └── ReportInputError        bad input to m1-report (folders, files, lines, options, the output folder),
                                    located by file and line; ``m1_reports`` re-exports it

Under the ``lm_eval`` command the start-up hook (:mod:`m1_eval.lm_eval_hook`) turns an :class:`M1UserError`
(also one that lm-eval wrapped in another exception) into that line on stderr and exit code 2, without a
traceback (unless ``--verbosity DEBUG``); the ``m1-eval`` and ``m1-sweep`` commands catch :class:`M1UserError`
the same way.  They derive from ``ValueError`` so that code catching lm-eval's own argument errors
(``ValueError``) still catches ours.

Standard library only, and nothing imported that the interpreter has not loaded at start-up (``os``; ``pathlib``
only when a :class:`ReportInputError` is made): the start-up hook and every package of the project import it.
"""

from __future__ import annotations

import os  # already loaded by every interpreter's start-up: free

__all__ = [
    "CommandError",
    "GenKwargsError",
    "M1DataError",
    "M1PromptError",
    "M1UserError",
    "ModelArgsError",
    "ReportInputError",
    "ServerError",
    "SweepError",
    "find_user_error",
    "located",
]


class M1UserError(ValueError):
    """Base class of the user-facing errors of m1-eval: ``str(error)`` is one line naming the cause and the fix."""


class GenKwargsError(M1UserError):
    """A gen_kwarg the user gave cannot be used; the message names the key and the fix."""


class ModelArgsError(M1UserError):
    """A model_arg the user gave cannot be used; the message names it and the fix."""


class M1DataError(M1UserError):
    """The evaluation data cannot be used as it is (missing file or source, bad record, md5 mismatch, offline)."""


class M1PromptError(M1UserError):
    """An unknown prompt variant (from a task config, ``--metadata`` or ``M1_PROMPT``)."""


class SweepError(M1UserError):
    """A sweep argument that cannot be used; the message names it and the fix."""


class CommandError(M1UserError):
    """A command run on the user's behalf (``lm_eval``, ``m1-report``) failed; the message carries its own error
    line, or where its log is."""


class ServerError(M1UserError):
    """``m1-server``: the last server of the fleet stayed down; the message names the server, the request and the
    error, and the fix (start the server, rerun the same command with ``--use_cache`` to resume)."""


class ReportInputError(M1UserError):
    """Bad input to ``m1-report`` (a folder, file or line, an option, the output folder), located by file and
    line where possible.

    ``str(error)`` is one line: ``path:line: what is wrong (how to fix it)``.  ``more`` holds further problems of
    the same kind (one line each), so that a user sees every bad file at once.
    """

    def __init__(
        self,
        message: str,
        *,
        path: os.PathLike[str] | str | None = None,
        line: int | None = None,
        hint: str | None = None,
        more: list[str] | tuple[str, ...] = (),
    ) -> None:
        from pathlib import Path  # here, not at the top: importing this module stays free

        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint
        self.more = list(more)
        super().__init__(self.render())

    @classmethod
    def from_os_error(cls, error: OSError, hint: str = "check the paths and permissions") -> ReportInputError:
        """An ``OSError`` (a folder that cannot be created, a file that cannot be read or written) as one line:
        ``path: reason (hint)``."""
        reason = error.strerror or str(error)
        return cls(reason, path=error.filename or None, hint=hint)

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "

    def render(self) -> str:
        text = self.location() + self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.more:
            text += f" [and {len(self.more)} more problem{'s' if len(self.more) > 1 else ''}]"
        return text

    def lines(self) -> list[str]:
        """Every problem, one line each (the first is the main one, without the "and N more" suffix)."""
        first = self.location() + self.message + (f" ({self.hint})" if self.hint else "")
        return [first, *self.more]


def located(path: os.PathLike[str] | str, line: int | None, message: str) -> str:
    """``path:line: message``, the form of every problem line of :class:`ReportInputError`."""
    return f"{path}:{line}: {message}" if line is not None else f"{path}: {message}"


def find_user_error(error: BaseException | None) -> M1UserError | None:
    """``error`` itself, or the first :class:`M1UserError` among its causes (lm-eval may wrap ours)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, M1UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
