"""The m1 paper's prompt: the question, one ``"A. text"`` line per option, then the instruction.

The m1 evaluation script builds the user turn as ``"{question}\\n{option_str}"`` plus ``"\\n"`` plus the suffix
``"Return your final response within \\\\boxed{}."``, where ``option_str`` joins ``f"{letter}. {text}"`` lines in
the record's option order.  The paper's "+CoT" baseline rows put ``"Let's think step by step. "`` before that
instruction.

Which variant a task renders (see ``resolve_variant``):

1. a task that fixes it (the ``m1_*_cot`` tasks set ``dataset_kwargs: {m1_prompt: cot}``);
2. else lm-eval's ``--metadata '{"prompt": "cot"}'`` (recorded in the results file's task config);
3. else the environment variable ``M1_PROMPT`` (``cot`` or ``plain``);
4. else ``plain``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from m1_base.errors import M1PromptError
from m1_tasks.benchmarks import COT, PLAIN  # the prompt variants (their task names too) are the registry's

PROMPT_ENV = "M1_PROMPT"
PROMPT_METADATA_KEY = "prompt"


BOXED_INSTRUCTION = "Return your final response within \\boxed{}."
INSTRUCTIONS: dict[str, str] = {
    PLAIN: BOXED_INSTRUCTION,
    COT: "Let's think step by step. " + BOXED_INSTRUCTION,
}
_ALIASES = {"plain": PLAIN, "default": PLAIN, "none": PLAIN, "cot": COT}


def normalize_variant(value: Any, where: str) -> str:
    """``"cot"`` / ``"plain"`` (``"default"`` is an alias of ``plain``); anything else is an error naming ``where``."""
    name = str(value).strip().lower()
    if name not in _ALIASES:
        raise M1PromptError(
            f"unknown m1 prompt variant {value!r} (from {where}); use one of: plain, cot"
        )
    return _ALIASES[name]


def resolve_variant(
    task_variant: Any = None, metadata_variant: Any = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The prompt variant and where it came from: task config > ``--metadata`` > ``$M1_PROMPT`` > plain."""
    environ = os.environ if environ is None else environ
    if task_variant not in (None, ""):
        return normalize_variant(task_variant, "the task config (dataset_kwargs.m1_prompt)"), "task"
    if metadata_variant not in (None, ""):
        return normalize_variant(metadata_variant, f"lm-eval metadata key {PROMPT_METADATA_KEY!r}"), "metadata"
    env_value = environ.get(PROMPT_ENV, "").strip()
    if env_value:
        return normalize_variant(env_value, f"environment variable {PROMPT_ENV}"), "env"
    return PLAIN, "default"


def options_dict(options: Any) -> dict[str, str]:
    """Options as ``{letter: text}`` in their original order.

    Accepts the dict of a raw record, the Arrow-safe list of ``{"letter", "text"}`` rows the datasets carry, a
    list of ``[letter, text]`` pairs, or either of those as a JSON string.
    """
    if isinstance(options, str):
        options = json.loads(options)
    if isinstance(options, Mapping):
        return {str(letter): str(text) for letter, text in options.items()}
    result: dict[str, str] = {}
    for row in options:
        if isinstance(row, Mapping):
            result[str(row["letter"])] = str(row["text"])
        else:
            letter, text = row
            result[str(letter)] = str(text)
    return result


def options_rows(options: Mapping[str, str]) -> list[dict[str, str]]:
    """``{letter: text}`` -> ``[{"letter": ..., "text": ...}, ...]`` (one Arrow schema for any letter set)."""
    return [{"letter": letter, "text": text} for letter, text in options.items()]


def format_options(options: Any) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in options_dict(options).items())


def render_prompt(question: str, options: Any, variant: str = PLAIN) -> str:
    """The user turn: ``"{question}\\n{A. text\\nB. text...}\\n{instruction}"``."""
    instruction = INSTRUCTIONS[normalize_variant(variant, "render_prompt")]
    return f"{question}\n{format_options(options)}\n{instruction}"
