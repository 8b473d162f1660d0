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
* ``lm_eval.api.model``: ``--use_cache`` keeps each of lm-eval's ``repeats`` of a request under its own key;
* ``lm_eval._cli.utils``: a ``--model_args``/``--gen_kwargs`` key given twice is an error, not "the last wins";
* ``lm_eval._cli.run``: m1-eval's user errors (``M1UserError``) end the command with their one-line message
  and exit code 2 instead of a traceback (``--verbosity DEBUG`` keeps the traceback);
* ``lm_eval.evaluator``: the environment report ``add_env_info`` writes into the results is the one an m1 model
  collected in the background while its engine loaded (:mod:`m1_models.env_report`): the same text, collected
  once per process.
  Credentials in the model_args (``user:password@`` in an address, a key as ``api_key``/``api_key_env``) are
  masked in the log line, the summary line and the results file lm-eval writes from them.

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
            from m1_base.errors import find_user_error

            user_error = find_user_error(error)  # lm-eval may wrap ours
            if user_error is None or str(getattr(args, "verbosity", "") or "").upper() == "DEBUG":
                raise
            sys.stderr.write(f"lm_eval: error: {user_error}\n")
            raise SystemExit(2) from None

    setattr(_execute, _PATCHED_ATTR, True)
    run_cls._execute = staticmethod(_execute) if isinstance(original, staticmethod) else _execute


def _patch_evaluator(module) -> None:
    from m1_models.env_report import wrap_add_env_info

    module.add_env_info = wrap_add_env_info(module.add_env_info)
    _patch_evaluator_credentials(module)


def _patch_evaluator_credentials(module) -> None:
    """lm-eval logs the model_args (INFO), prints them after the run and writes them into the results file
    (``config.model_args`` and every task's ``metadata``): a ``user:password@`` in an address, an ``api_key`` or a
    key pasted as ``api_key_env`` is masked there (``m1_models.server_model`` holds the rules; it is imported
    only when a model_arg may carry one)."""
    original = module.simple_evaluate
    if getattr(original, _PATCHED_ATTR, False):
        return

    def may_carry_credentials(model_args) -> bool:
        items = model_args.items() if isinstance(model_args, dict) else [("", model_args)]
        return any(str(k).startswith("api_key") or any(c in str(v) for c in "@?#") for k, v in items)

    def simple_evaluate(*args, **kwargs):
        model_args = kwargs["model_args"] if "model_args" in kwargs else args[1] if len(args) > 1 else None
        if not may_carry_credentials(model_args):
            return original(*args, **kwargs)
        from m1_models import server_model

        server_model.guard_lm_eval_model_args(model_args)
        return server_model.mask_lm_eval_results(original(*args, **kwargs))

    def mask_record(record) -> bool:
        server_model = sys.modules.get("m1_models.server_model")
        if server_model is not None:
            server_model.mask_log_record(record)
        return True

    simple_evaluate.__wrapped__ = original  # type: ignore[attr-defined]
    simple_evaluate.__doc__ = original.__doc__
    setattr(simple_evaluate, _PATCHED_ATTR, True)
    module.simple_evaluate = simple_evaluate
    module.eval_logger.addFilter(mask_record)


def _shown_values(key: str, given: list[str]) -> list[str]:
    """The values of a key given twice as its error line shows them: a credential (``user:password@`` in an
    address, a key as ``api_key``/``api_key_env``) masked by ``m1_models.server_model``'s rules."""
    if not key.strip().startswith("api_key") and not any(c in value for value in given for c in "@?#"):
        return given
    from m1_models.server_model import mask_model_arg

    return [str(mask_model_arg(key.strip(), value)) for value in given]


def _patch_cli_utils(module) -> None:
    """``--model_args``/``--gen_kwargs``: a key given twice is one line and exit code 2 (lm-eval keeps the last
    one with a warning: ``max_tokens_thinking=512,max_tokens_thinking=1024`` would silently run at 1024)."""
    action_cls = module.MergeDictAction
    original = action_cls.__call__
    if getattr(original, _PATCHED_ATTR, False):
        return

    def __call__(self, parser, namespace, values, option_string=None):
        from m1_base.values import duplicated_keys

        items = [values] if isinstance(values, str) else list(values or ())
        pairs = []
        for item in items:
            if str(item).lstrip().startswith("{"):  # a JSON object: lm-eval merges it whole
                continue
            for part in module.split_top_level(str(item)):
                key, _, value = part.partition("=")
                pairs.append((key.strip(), value))
        repeated = duplicated_keys(pairs)
        if repeated:
            given = _shown_values(repeated[0], [value for key, value in pairs if key == repeated[0]])
            sys.stderr.write(
                f"{parser.prog}: error: argument {option_string or self.dest}: {repeated[0]} is given "
                f"{len(given)} times ({', '.join(given)}); give it once\n"
            )
            raise SystemExit(2)
        return original(self, parser, namespace, values, option_string)

    setattr(__call__, _PATCHED_ATTR, True)
    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    action_cls.__call__ = __call__


def _patch_caching_lm(module) -> None:
    """``--use_cache`` keys a response by the request's args, and lm-eval's ``repeats: K`` hands the model K
    identical requests: every sample of a resumed run would come back as the first one.  The k-th identical
    request (k >= 1) is looked up and stored under its own key (:func:`m1_models.records.number_repeats`), the
    key the m1 models store it under."""
    caching_cls = module.CachingLM
    original = caching_cls.__getattr__
    if getattr(original, _PATCHED_ATTR, False):
        return

    def __getattr__(self, attr):
        fn = original(self, attr)
        if attr != "generate_until":
            return fn
        from m1_models.records import number_repeats

        return lambda requests, *args, **kwargs: fn(number_repeats(list(requests)), *args, **kwargs)

    setattr(__getattr__, _PATCHED_ATTR, True)
    caching_cls.__getattr__ = __getattr__


PATCHES: dict[str, Callable] = {
    "lm_eval.api.model": _patch_caching_lm,
    "lm_eval._cli.utils": _patch_cli_utils,
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
