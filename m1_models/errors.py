"""Errors a user can cause (bad arguments, missing data, bad files).

Every one carries a single-line message naming the cause and the fix.  Under the ``lm_eval`` command the
start-up hook turns them into that line on stderr and exit code 2, without a traceback (unless
``--verbosity DEBUG``).  Standard library only.
"""


class M1UserError(ValueError):
    """Base class of the user-facing errors of m1-eval."""
