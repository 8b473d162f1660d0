"""Every error a user can cause and fix, in one tree (as httpx keeps its exceptions in ``httpx._exceptions``).

::

    ValueError
    └── M1UserError                 bad arguments, missing data, bad files: one line naming the cause and the fix
        ├── GenKwargsError          a --gen_kwargs value the budget-forcing controller cannot use
        ├── ModelArgsError          a --model_args value (or a model/tokenizer) an m1 model cannot use
        ├── M1DataError             the evaluation data (missing file or source, bad record, md5, offline)
        ├── M1PromptError           an unknown prompt variant (task config, --metadata or M1_PROMPT)
        ├── SweepError              an m1-sweep argument
        └── CommandError            a command m1-eval ran for the user (lm_eval, m1-report) failed

``m1_reports.errors.ReportInputError`` (bad input to ``m1-report``, located by file and line) joins this tree
next: it needs no more than subclassing :class:`M1UserError` (its ``__init__`` renders its own one-line
message, as ``str(error)`` of every class here is one line).

Under the ``lm_eval`` command the start-up hook (:mod:`m1_eval.lm_eval_hook`) turns an :class:`M1UserError`
(also one that lm-eval wrapped in another exception) into that line on stderr and exit code 2, without a
traceback (unless ``--verbosity DEBUG``); the ``m1-eval`` and ``m1-sweep`` commands catch :class:`M1UserError`
the same way.  They derive from ``ValueError`` so that code catching lm-eval's own argument errors
(``ValueError``) still catches ours.

Standard library only, and nothing imported: the start-up hook and every package of the project import it.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "GenKwargsError",
    "M1DataError",
    "M1PromptError",
    "M1UserError",
    "ModelArgsError",
    "SweepError",
    "find_user_error",
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


def find_user_error(error: BaseException | None) -> M1UserError | None:
    """``error`` itself, or the first :class:`M1UserError` among its causes (lm-eval may wrap ours)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, M1UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
