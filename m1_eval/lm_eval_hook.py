"""Start-up hook that plugs m1-eval into lm-evaluation-harness 0.4.13, which has no plugin discovery.

``m1_eval_hook.pth`` (installed into site-packages) imports this module at every interpreter start and calls
:func:`install`.  That only puts a small finder on ``sys.meta_path``; nothing else happens until lm-eval itself
imports one of the modules below, after which the finder runs a patch:

* ``lm_eval.models``: register the m1 models as lazy ``"module:Class"`` strings (after lm-eval's own
  registrations, so ``hf``, ``vllm`` ... stay visible; vLLM is imported only when an m1 model is used);
* ``lm_eval.tasks.manager``: every ``TaskManager`` that includes lm-eval's default tasks also indexes the
  project's task folder (``include_defaults=False`` promises only the tasks under ``include_path``: kept);
* ``lm_eval.loggers.evaluation_tracker``: next to each ``samples_<task>_<date>.jsonl`` the m1 models'
  per-sample records are written as ``m1_generations_<task>_<date>.jsonl``;
* ``lm_eval._cli.run``: m1-eval's user errors (``M1UserError``) end the command with their one-line message
  and exit code 2 instead of a traceback (``--verbosity DEBUG`` keeps the traceback);
* ``lm_eval.evaluator``: the environment report ``add_env_info`` writes into the results (torch's
  ``get_pretty_env_info``: ``pip list`` and ten other subprocesses, 0.5-1.5 s after the evaluation) is taken from
  :func:`prefetch_env_info`, which an m1 model starts in the background before its engine starts: the same
  text, collected once per process while the engine loads (an m1-sweep writes many results per process).

Standard library only; safe to run twice; ``M1_EVAL_DISABLE_HOOK=1`` switches it off.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Callable

DISABLE_ENV = "M1_EVAL_DISABLE_HOOK"

#: lm-eval model name -> "module:Class" (imported lazily by lm-eval's registry)
MODELS: dict[str, str] = {
    "m1-vllm": "m1_models.vllm_model:M1VLLM",
    "m1-hf": "m1_models.hf_model:M1HF",
    "m1-server": "m1_models.server_model:M1Server",
}

_PATCHED_ATTR = "_m1_eval_patched"


def _register_models(module) -> None:
    from lm_eval.api.registry import model_registry

    for name, target in MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)


def _patch_task_manager(module) -> None:
    manager_cls = module.TaskManager
    if getattr(manager_cls.__init__, _PATCHED_ATTR, False):
        return
    original_init = manager_cls.__init__

    def __init__(self, *args, **kwargs):
        import inspect

        from m1_tasks.paths import task_dir

        bound = inspect.signature(original_init).bind(self, *args, **kwargs)
        if not bound.arguments.get("include_defaults", True):  # only the caller's paths, as lm-eval promises
            original_init(*bound.args, **bound.kwargs)
            return
        include_path = bound.arguments.get("include_path")
        ours = str(task_dir())
        paths = (
            []
            if include_path is None
            else (list(include_path) if isinstance(include_path, (list, tuple)) else [include_path])
        )
        if ours not in {str(p) for p in paths}:
            paths.insert(0, ours)  # user paths come later, so they can override our tasks
        bound.arguments["include_path"] = paths
        original_init(*bound.args, **bound.kwargs)

    setattr(__init__, _PATCHED_ATTR, True)
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    manager_cls.__init__ = __init__


def _patch_evaluation_tracker(module) -> None:
    tracker_cls = module.EvaluationTracker
    if getattr(tracker_cls.save_results_samples, _PATCHED_ATTR, False):
        return
    original = tracker_cls.save_results_samples

    def save_results_samples(self, task_name, samples):
        original(self, task_name, samples)
        from m1_models.records import write_records_for_task

        write_records_for_task(self, task_name, samples)

    setattr(save_results_samples, _PATCHED_ATTR, True)
    save_results_samples.__wrapped__ = original  # type: ignore[attr-defined]
    tracker_cls.save_results_samples = save_results_samples


def _patch_cli_run(module) -> None:
    """``lm_eval run``: an m1-eval user error becomes one line on stderr and exit code 2."""
    run_cls = module.Run
    original = run_cls.__dict__.get("_execute")
    if original is None or getattr(original, _PATCHED_ATTR, False):
        return
    execute = original.__func__ if isinstance(original, staticmethod) else original

    def _execute(args, *rest, **kwargs):
        try:
            return execute(args, *rest, **kwargs)
        except Exception as error:
            from m1_eval.errors import find_user_error

            user_error = find_user_error(error)  # lm-eval may wrap ours
            if user_error is None or str(getattr(args, "verbosity", "") or "").upper() == "DEBUG":
                raise
            sys.stderr.write(f"lm_eval: error: {user_error}\n")
            raise SystemExit(2) from None

    setattr(_execute, _PATCHED_ATTR, True)
    run_cls._execute = staticmethod(_execute) if isinstance(original, staticmethod) else _execute


_ENV_INFO: dict[str, object] = {}  # "thread": the collecting thread, "text": what it collected


def prefetch_env_info() -> None:
    """Start collecting torch's environment report in a daemon thread, once per process, when an lm-eval
    evaluation is under way (``lm_eval.evaluator`` imported and patched); otherwise nothing happens."""
    evaluator = sys.modules.get("lm_eval.evaluator")
    if "thread" in _ENV_INFO or not getattr(getattr(evaluator, "add_env_info", None), _PATCHED_ATTR, False):
        return
    import threading

    def collect() -> None:
        try:
            from torch.utils.collect_env import get_pretty_env_info

            _ENV_INFO["text"] = get_pretty_env_info()
        except Exception as error:  # noqa: BLE001 - lm-eval writes the error text in this case too
            _ENV_INFO["text"] = str(error)

    thread = threading.Thread(target=collect, name="m1-env-info", daemon=True)
    _ENV_INFO["thread"] = thread
    thread.start()


def _patch_evaluator(module) -> None:
    original = module.add_env_info
    if getattr(original, _PATCHED_ATTR, False):
        return

    def add_env_info(storage):
        thread = _ENV_INFO.get("thread")
        if thread is None:  # no m1 model generated in this process
            return original(storage)
        thread.join()  # type: ignore[attr-defined]
        import torch.utils.collect_env as collect_env

        collect = collect_env.get_pretty_env_info
        collect_env.get_pretty_env_info = lambda: _ENV_INFO["text"]  # lm-eval imports it at call time
        try:
            return original(storage)
        finally:
            collect_env.get_pretty_env_info = collect

    setattr(add_env_info, _PATCHED_ATTR, True)
    add_env_info.__wrapped__ = original  # type: ignore[attr-defined]
    module.add_env_info = add_env_info


PATCHES: dict[str, Callable] = {
    "lm_eval.evaluator": _patch_evaluator,
    "lm_eval._cli.run": _patch_cli_run,
    "lm_eval.models": _register_models,
    "lm_eval.tasks.manager": _patch_task_manager,
    "lm_eval.loggers.evaluation_tracker": _patch_evaluation_tracker,
}


# The finder and loader follow importlib's protocols without subclassing importlib.abc, whose import pulls in
# importlib.resources (tens of milliseconds at every interpreter start).


class _PatchingLoader:
    def __init__(self, wrapped, patch: Callable) -> None:
        self._wrapped = wrapped
        self._patch = patch

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:
        self._wrapped.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_filename, ... for tools that ask the loader
        return getattr(self._wrapped, name)


class M1EvalFinder:
    """Finds nothing itself: wraps the real loader of the patched lm-eval modules."""

    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def is_active() -> bool:
    return any(isinstance(finder, M1EvalFinder) for finder in sys.meta_path) or any(
        type(finder).__name__ == "M1EvalFinder" for finder in sys.meta_path
    )


def install() -> bool:
    """Install the hook (idempotent). Returns False when switched off by ``M1_EVAL_DISABLE_HOOK``."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    if not is_active():
        sys.meta_path.insert(0, M1EvalFinder())
    for name, patch in PATCHES.items():  # lm-eval imported before the hook: patch now
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
    return True
