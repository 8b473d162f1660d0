"""gen_kwargs as lm-eval stores them, the thinking budget they name, and run labels."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

BUDGET_KEY = "max_tokens_thinking"
IGNORE_KEY = "thinking_n_ignore"


def _convert(value: str) -> Any:
    """Type a ``k=v`` value the way lm-eval's ``simple_parse_args_string`` does (bool, int, float, else str)."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside quotes or brackets."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


def parse_gen_kwargs(value: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """``config.gen_kwargs`` of a results file (a dict, a ``"k=v,k=v"`` string, or null) as a dict."""
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
        result: dict[str, Any] = {}
        for part in _split_top_level(text):
            key, sep, raw = part.partition("=")
            result[key.strip()] = _convert(raw) if sep else True
        return result
    raise TypeError(f"gen_kwargs must be a dict or a string, not {type(value).__name__}")


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


def run_label(model_name: str, gen_kwargs: Mapping[str, Any]) -> str:
    """``m1-7B-23K (budget 4096, ignore 2)``; without budget forcing, the model name alone."""
    name = short_model_name(model_name)
    budget = budget_of(gen_kwargs)
    if budget is None:
        return name
    ignore = ignore_of(gen_kwargs) or 0
    return f"{name} (budget {budget}, ignore {ignore})" if ignore else f"{name} (budget {budget})"


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
