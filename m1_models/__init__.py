"""Budget-forcing models for lm-evaluation-harness.

The public surface is below; every name is imported on first use (PEP 562), so ``import m1_models`` (which the
start-up hook's records writer and the scorer's markers cause) imports nothing else::

    from m1_models import ForcedRequest, parse_gen_kwargs, M1VLLM

* settings: :func:`parse_gen_kwargs` -> :class:`GenerationSettings` (:class:`ForcingConfig`, :data:`PRESETS`,
  :class:`PresetRules`) in :mod:`m1_models.settings`;
* the per-request state machine: :class:`ForcedRequest`, :class:`GenerationStep`, :class:`StepResult`,
  :class:`GenerationRecord`, :class:`Phase` in :mod:`m1_models.budget_forcing`;
* engines and schedules: :class:`StepEngine`, :func:`run` in :mod:`m1_models.scheduling`;
* the backend contract: :class:`Backend`, :class:`BackendTokenizer`, :class:`HFTokenizer` in
  :mod:`m1_models.backend` (a new backend builds a ``Backend`` and hands it to :class:`M1LM`);
* lm-eval models: :class:`M1LM` (the shared base, imports lm-eval) and :class:`M1VLLM` (``m1-vllm``, imports
  vLLM when constructed);
* the user errors the controller raises: :class:`GenKwargsError`, :class:`ModelArgsError` (from
  :mod:`m1_base.errors`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DEFAULT_MAX_GEN_TOKS": "m1_models.settings",
    "ForcingConfig": "m1_models.settings",
    "GenerationSettings": "m1_models.settings",
    "PRESETS": "m1_models.settings",
    "PresetRules": "m1_models.settings",
    "parse_gen_kwargs": "m1_models.settings",
    "ForcedRequest": "m1_models.budget_forcing",
    "GenerationRecord": "m1_models.budget_forcing",
    "GenerationStep": "m1_models.budget_forcing",
    "Phase": "m1_models.budget_forcing",
    "StepResult": "m1_models.budget_forcing",
    "StepEngine": "m1_models.scheduling",
    "run": "m1_models.scheduling",
    "Backend": "m1_models.backend",
    "BackendTokenizer": "m1_models.backend",
    "HFTokenizer": "m1_models.backend",
    "M1LM": "m1_models.lm_eval_model",
    "M1VLLM": "m1_models.vllm_model",
    "GenKwargsError": "m1_base.errors",
    "ModelArgsError": "m1_base.errors",
}

__all__ = [  # the keys of _EXPORTS
    "Backend",
    "BackendTokenizer",
    "DEFAULT_MAX_GEN_TOKS",
    "ForcedRequest",
    "ForcingConfig",
    "GenKwargsError",
    "GenerationRecord",
    "GenerationSettings",
    "GenerationStep",
    "HFTokenizer",
    "M1LM",
    "M1VLLM",
    "ModelArgsError",
    "PRESETS",
    "Phase",
    "PresetRules",
    "StepEngine",
    "StepResult",
    "parse_gen_kwargs",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from m1_base.errors import GenKwargsError, ModelArgsError
    from m1_models.backend import Backend, BackendTokenizer, HFTokenizer
    from m1_models.budget_forcing import ForcedRequest, GenerationRecord, GenerationStep, Phase, StepResult
    from m1_models.lm_eval_model import M1LM
    from m1_models.scheduling import StepEngine, run
    from m1_models.settings import (
        DEFAULT_MAX_GEN_TOKS,
        PRESETS,
        ForcingConfig,
        GenerationSettings,
        PresetRules,
        parse_gen_kwargs,
    )
    from m1_models.vllm_model import M1VLLM
