"""gen_kwargs as lm-eval stores them, the thinking budget they name, and run labels.

A run's label is decided here and only here (:func:`run_labels`): ``--label`` values, or the model and its
budget gen_kwargs (:func:`default_label`), made unique.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from m1_base.errors import ReportInputError
from m1_reports.columns import is_cot

BUDGET_KEY = "max_tokens_thinking"
IGNORE_KEY = "thinking_n_ignore"


def run_args(value: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """``config.gen_kwargs`` (or ``model_args``) of a results file -- a dict, a ``"k=v,k=v"`` string, or null --
    as a dict.

    A string is parsed as lm-eval parses one: split on the commas outside quotes and brackets (lm-eval 0.4.13's
    command-line splitter, ``lm_eval._cli.utils.split_top_level``), each value typed as
    ``lm_eval.utils.simple_parse_args_string`` types it (``handle_arg_string``: bool, None, int, float, quotes
    stripped, else str).  ``simple_parse_args_string`` itself splits on every comma, which breaks quoted values
    such as ``thinking_n_ignore_str=' Wait, '``.  Beyond lm-eval: a JSON object string is read as JSON, a value
    in brackets that is JSON (``until=["a","b"]``) becomes its list, ``null`` is None, and a key without ``=`` is
    True.  lm-eval is imported only here, for strings (0.4.13 results files hold dicts).
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                return loaded
        from lm_eval._cli.utils import split_top_level
        from lm_eval.utils import handle_arg_string

        result: dict[str, Any] = {}
        for part in (p.strip() for p in split_top_level(text)):
            if part:
                key, sep, raw = part.partition("=")
                result[key.strip()] = _json_value(raw, handle_arg_string(raw)) if sep else True
        return result
    raise TypeError(f"gen_kwargs must be a dict or a string, not {type(value).__name__}")


def _json_value(raw: str, value: Any) -> Any:
    """``value`` (lm-eval's typing of ``raw``), or, when lm-eval left an unquoted text as it was and that text is
    JSON (a list or object in brackets, or ``null``), the decoded JSON."""
    if not isinstance(value, str) or value != raw.strip():
        return value
    if value.lower() == "null":
        return None
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def budget_of(gen_kwargs: Mapping[str, Any]) -> int | str | None:
    """The thinking budget: an int, ``"auto"``, or None (no budget forcing)."""
    value = gen_kwargs.get(BUDGET_KEY)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    return text.lower() if text.lower() == "auto" else text


def ignore_of(gen_kwargs: Mapping[str, Any]) -> int | None:
    """``thinking_n_ignore`` (0 when forcing without it, None without forcing)."""
    if budget_of(gen_kwargs) is None:
        return None
    value = gen_kwargs.get(IGNORE_KEY, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def short_model_name(model_name: str) -> str:
    """``UCSC-VLAA/m1-7B-23K`` -> ``m1-7B-23K``; ``/models/qwen/`` -> ``qwen``."""
    text = str(model_name).strip().rstrip("/\\")
    text = re.split(r"[/\\]", text)[-1] if text else text
    return text or str(model_name)


def run_label(model_name: str, gen_kwargs: Mapping[str, Any], *, cot: bool = False, samples: int = 1) -> str:
    """``m1-7B-23K (budget 4096, ignore 2)``; without budget forcing, the model name alone; ``cot``: ``+CoT``
    after the model name, as the paper names its CoT-prompt rows (``Qwen2.5-7B-Instruct+CoT``); ``samples``: K
    samples per question (lm-eval's repeats), ``m1-7B-23K (budget 4096, 8 samples)``."""
    name = short_model_name(model_name) + ("+CoT" if cot else "")
    budget = budget_of(gen_kwargs)
    parts = []
    if budget is not None:
        ignore = ignore_of(gen_kwargs) or 0
        parts = [f"budget {budget}"] + ([f"ignore {ignore}"] if ignore else [])
    if samples > 1:
        parts.append(f"{samples} samples")
    return f"{name} ({', '.join(parts)})" if parts else name


class LabelSource(Protocol):
    """What a run's label is made from (:class:`m1_reports.read_results.RunInfo` is one)."""

    model_name: str
    budget: int | str | None
    ignore: int | None
    tasks: Mapping[str, Any]

    @property
    def path(self) -> Path: ...


def default_label(
    model_name: str, budget: int | str | None, ignore: int | None, tasks: Iterable[str], samples: int = 1
) -> str:
    """Model and budget (:func:`run_label`); ``+CoT`` when every task is a CoT variant; K when every task has
    ``samples`` (K > 1) samples per question."""
    tasks = list(tasks)
    kwargs: dict[str, Any] = {BUDGET_KEY: budget, IGNORE_KEY: ignore or 0} if budget is not None else {}
    return run_label(model_name, kwargs, cot=bool(tasks) and all(is_cot(task) for task in tasks), samples=samples)


def _samples(tasks: Mapping[str, Any]) -> int:
    """The samples per question every task of a run has (a task result's ``repeats``), else 1."""
    found = {int(getattr(result, "repeats", 1) or 1) for result in tasks.values()}
    return found.pop() if len(found) == 1 else 1


def run_labels(runs: Sequence[LabelSource], given: Sequence[str] | None = None) -> list[str]:
    """Every run's label: the ``--label`` values (one per run, in order, all different), else each run's
    :func:`default_label`, repeated ones numbered (:func:`unique_labels`)."""
    defaults = [
        default_label(run.model_name, run.budget, run.ignore, run.tasks, _samples(run.tasks)) for run in runs
    ]
    if not given:
        return unique_labels(defaults)
    if len(given) != len(runs):
        found = "; ".join(f"{run.path} ({label})" for run, label in zip(runs, defaults, strict=True))
        raise ReportInputError(
            f"{len(given)} --label value{'s' if len(given) != 1 else ''} for {len(runs)} run"
            f"{'s' if len(runs) != 1 else ''}: {found}",
            hint="give one --label per run, in this order",
        )
    names = [str(label) for label in given]
    if len(set(names)) != len(names):
        raise ReportInputError("--label values must differ from each other", hint="give each run its own label")
    return names


def unique_labels(labels: list[str]) -> list[str]:
    """Make repeated labels unique by numbering the second and later ones: ``x``, ``x #2``, ``x #3``."""
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    taken = set(labels)
    result = []
    for label in labels:
        if counts[label] == 1:
            result.append(label)
            continue
        seen[label] += 1
        if seen[label] == 1:
            result.append(label)
            continue
        number = seen[label]
        candidate = f"{label} #{number}"
        while candidate in taken:
            number += 1
            candidate = f"{label} #{number}"
        taken.add(candidate)
        result.append(candidate)
    return result


def format_gen_kwargs(gen_kwargs: Mapping[str, Any]) -> str:
    """``k=v,k=v`` in key order (lists and dicts as JSON), as lm-eval's command line takes them."""
    parts = []
    for key in sorted(gen_kwargs):
        value = gen_kwargs[key]
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)
        parts.append(f"{key}={text}")
    return ",".join(parts)
