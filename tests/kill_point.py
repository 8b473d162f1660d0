"""Test-only driver: a real command (``lm_eval``, ``m1-sweep``), paused at a point the test controls, for the test
to kill it.

    python tests/kill_point.py N MARKER COMMAND <arguments...>

runs the installed console script COMMAND (same interpreter, so m1-eval's start-up hook is in place as usual)
with one change: once the N-th finished request has been written (its response in lm-eval's
``--use_cache`` database by ``cache_hook.add_partial``, then its m1 record by ``RecordSink.add``; SqliteDict with
``autocommit=True`` returns from each write only after the writer thread has committed it), the process
writes MARKER (the count, then renamed into place) and sleeps, without generating another token, until the test
kills it.  So a killed run leaves exactly N responses and N records on disk, whatever the machine's speed.

If nobody kills it, it exits with code 3 after ``SAFETY_SECONDS`` rather than linger.  Nothing outside the
tests uses this file; library code has no hook for it.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import time
from pathlib import Path

SAFETY_SECONDS = 900


def pause_after(n: int, marker: Path) -> None:
    """Make the ``n``-th ``RecordSink.add`` of this process its last act: write ``marker``, then sleep."""
    from m1_models.records import RecordSink

    original_add = RecordSink.add
    count = 0

    def add(self, record):
        nonlocal count
        original_add(self, record)  # the request's cache entry was added (and committed) just before
        count += 1
        if count == n:
            tmp = marker.with_name(marker.name + ".tmp")
            tmp.write_text(f"{count}\n")
            os.replace(tmp, marker)
            time.sleep(SAFETY_SECONDS)  # the test SIGKILLs the process group long before
            print(f"kill_point: nobody killed the run paused after {n} requests", file=sys.stderr)
            os._exit(3)

    RecordSink.add = add


def main() -> None:
    n, marker, command, *args = sys.argv[1:]
    pause_after(int(n), Path(marker))
    script = shutil.which(command, path=str(Path(sys.executable).parent))
    if script is None:
        sys.exit(f"kill_point: no {command} script beside {sys.executable}")
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).parent)  # as when the script runs itself (not this tests/ folder)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
