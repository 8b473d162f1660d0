"""Budget-forcing models for lm-evaluation-harness.

Every public name is imported on first use (PEP 562), so ``import m1_models`` imports nothing else::

    from m1_models import ForcedRequest, parse_gen_kwargs, M1VLLM

The modules, bottom up (each imports only those above it in this list, and ``m1_base``, ``m1_tasks``):

* :mod:`m1_models.settings`: the gen_kwargs and presets, parsed into :class:`GenerationSettings`;
* :mod:`m1_models.engine_types`: the types that cross the engine boundary (steps, results, the engine and
  tokenizer protocols);
* :mod:`m1_models.budget_forcing`: the per-request state machine :class:`ForcedRequest`;
* :mod:`m1_models.scheduling`: the schedules that move steps between requests and an engine;
* :mod:`m1_models.backend`: what a backend hands :class:`M1LM`; :mod:`m1_models.lm_eval_model`: ``M1LM``;
* the backends: :mod:`m1_models.vllm_model` (``m1-vllm``, its engine adapter :mod:`m1_models.vllm_engine` and
  :mod:`m1_models.data_parallel`), :mod:`m1_models.server_model` (``m1-server``), :mod:`m1_models.hf_model`
  (``m1-hf``).

The public names are the keys of ``_EXPORTS`` below (their one home).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DEFAULT_MAX_GEN_TOKS": "m1_models.settings",
    "ForcingConfig": "m1_models.settings",
    "GenerationSettings": "m1_models.settings",
    "PRESETS": "m1_models.settings",
    "PresetRules": "m1_models.settings",
    "parse_gen_kwargs": "m1_models.settings",
    "BackendTokenizer": "m1_models.engine_types",
    "GenerationStep": "m1_models.engine_types",
    "Phase": "m1_models.engine_types",
    "StepEngine": "m1_models.engine_types",
    "StepResult": "m1_models.engine_types",
    "ForcedRequest": "m1_models.budget_forcing",
    "GenerationRecord": "m1_models.budget_forcing",
    "run": "m1_models.scheduling",
    "Backend": "m1_models.backend",
    "HFTokenizer": "m1_models.backend",
    "M1LM": "m1_models.lm_eval_model",
    "M1VLLM": "m1_models.vllm_model",
    "GenKwargsError": "m1_base.errors",
    "ModelArgsError": "m1_base.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
