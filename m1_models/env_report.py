"""lm-eval's environment report, collected once per process in the background while an engine starts.

``lm_eval.evaluator.add_env_info`` writes torch's ``get_pretty_env_info`` into every results file: ``pip list``
and ten other subprocesses, 0.5-1.5 s after the evaluation (an m1-sweep writes many results per process).
:func:`prefetch` starts collecting that text in a daemon thread when an m1 model starts its engine;
:func:`wrap_add_env_info` (installed by the start-up hook, :mod:`m1_eval.lm_eval_hook`) makes lm-eval's function
write the collected text: the same text, collected once.

Standard library only at import.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

#: set on the wrapped ``add_env_info``; :func:`prefetch` only collects when lm-eval's function is wrapped
WRAPPED_ATTR = "_m1_env_report"

_STATE: dict[str, Any] = {}  # "thread": the collecting thread, "text": what it collected


def prefetch() -> None:
    """Start collecting torch's environment report in a daemon thread, once per process, when an lm-eval
    evaluation is under way (``lm_eval.evaluator`` imported and its ``add_env_info`` wrapped); otherwise
    nothing happens."""
    evaluator = sys.modules.get("lm_eval.evaluator")
    if "thread" in _STATE or not getattr(getattr(evaluator, "add_env_info", None), WRAPPED_ATTR, False):
        return

    def collect() -> None:
        try:
            from torch.utils.collect_env import get_pretty_env_info

            _STATE["text"] = get_pretty_env_info()
        except Exception as error:  # noqa: BLE001 - lm-eval writes the error text in this case too
            _STATE["text"] = str(error)

    thread = threading.Thread(target=collect, name="m1-env-info", daemon=True)
    _STATE["thread"] = thread
    thread.start()


def collected_text() -> str | None:
    """What the background thread collected (None before :func:`prefetch` ran)."""
    return _STATE.get("text")


def wrap_add_env_info(original: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """lm-eval's ``add_env_info``, writing the prefetched report when there is one (lm-eval's own otherwise)."""
    if getattr(original, WRAPPED_ATTR, False):
        return original

    def add_env_info(storage):
        thread = _STATE.get("thread")
        if thread is None:  # no m1 model generated in this process
            return original(storage)
        thread.join()
        import torch.utils.collect_env as collect_env

        collect = collect_env.get_pretty_env_info
        collect_env.get_pretty_env_info = lambda: _STATE["text"]  # lm-eval imports it at call time
        try:
            return original(storage)
        finally:
            collect_env.get_pretty_env_info = collect

    setattr(add_env_info, WRAPPED_ATTR, True)
    add_env_info.__wrapped__ = original  # type: ignore[attr-defined]
    return add_env_info
