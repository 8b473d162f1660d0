"""The strict parsers of a user's values: one per kind of value, shared by every gen_kwarg, every backend's
model_args and the commands' flags, so that one spelling means one thing everywhere.

Values arrive already converted by lm-eval's command line (``lm_eval._cli.utils.handle_cli_value_string``:
``true``/``false`` become booleans, digits ints, ``-5``, ``1.5``, ``1e3``, ``inf`` floats, ``[...]``/``'...'``
Python literals, anything else stays a string) or as strings (``simple_parse_args_string``, the commands' own
flags).  Each parser takes what either produces and returns the documented meaning, or raises the caller's
:class:`~m1_base.errors.M1UserError` subclass with one line naming the key, the value and the accepted form.

* :func:`boolean`: ``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``; any case);
* :func:`whole`: a whole number (``7``, ``-5``; an integral float such as ``-5.0`` too, since lm-eval's parser
  turns a signed ``-5`` into one); never a boolean, a fraction, ``inf`` or ``nan``;
* :func:`token_count`: a whole number of tokens, at least ``minimum`` (1) and at most :data:`MAX_TOKENS`;
* :func:`number`, :func:`probability`: a finite real number (in a range);
* :func:`text`, :func:`texts`: a string, a list of non-empty strings;
* :func:`choice`: one of a fixed set of words.

"Not set" (``none``, ``None`` or an empty value) is accepted only where the caller says it is a documented
meaning (``optional=True``) and then returns ``None``; elsewhere it is an error, never a silent default.

Written by hand: argparse and pydantic convert types, but neither takes lm-eval's pre-converted values nor
reports in this project's one-line form with the caller's error class.  Standard library only.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from m1_base.errors import GenKwargsError, M1UserError, ModelArgsError

__all__ = [
    "GEN_KWARG",
    "MAX_TOKENS",
    "MODEL_ARG",
    "Source",
    "argparse_type",
    "boolean",
    "choice",
    "duplicated_keys",
    "is_not_set",
    "number",
    "probability",
    "text",
    "texts",
    "token_count",
    "whole",
]

T = TypeVar("T")

#: the largest token count any key takes (vLLM's token counts are 32-bit; no context window comes near it)
MAX_TOKENS = 2**31 - 1

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
_WHOLE = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Source:
    """Where a value comes from: the word that starts its message (``gen_kwarg``, ``model_arg``, ``--flag``) and
    the error class raised for it; a command's flags have no label (the flag names itself)."""

    label: str
    error: type[M1UserError] = M1UserError

    def fail(self, key: str, value: Any, expected: str) -> M1UserError:
        """The one-line error: ``<label> <key>=<value> <expected>``."""
        shown = "(empty)" if isinstance(value, str) and not value.strip() else repr(value)
        if len(shown) > 80:  # one readable line, whatever was pasted
            shown = shown[:60] + f"... ({len(shown)} characters)"
        sep = " " if key.startswith("-") else "="  # a command's flag: "--budgets 'x' ...", a key: "key='x' ..."
        return self.error(f"{self.label} {key}{sep}{shown} {expected}".strip())


#: where the model's values come from: lm-eval's ``--gen_kwargs`` (and task configs) and ``--model_args``
GEN_KWARG = Source("gen_kwarg", GenKwargsError)
MODEL_ARG = Source("model_arg", ModelArgsError)


def is_not_set(value: Any) -> bool:
    """``None``, ``"none"`` (any case) or an empty/blank string: the spellings of "not set"."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def boolean(value: Any, key: str, source: Source) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise source.fail(key, value, f"must be true or false (also yes/no, on/off, 1/0); e.g. {key}=false")


def whole(
    value: Any,
    key: str,
    source: Source,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
    hint: str = "",
) -> int | None:
    """A whole number in [minimum, maximum]; ``None`` for "not set" when ``optional``."""
    if optional and is_not_set(value):
        return None
    bounds = _bounds_text(minimum, maximum)
    expected = f"must be a whole number{bounds}" + (f"; {hint}" if hint else "")
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise source.fail(key, value, expected)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise source.fail(key, value, expected)
    return number


def token_count(
    value: Any, key: str, source: Source, *, minimum: int = 1, optional: bool = False, hint: str = ""
) -> int | None:
    """A number of tokens: a whole number in [minimum, :data:`MAX_TOKENS`]."""
    return whole(value, key, source, minimum=minimum, maximum=MAX_TOKENS, optional=optional, hint=hint)


def number(
    value: Any,
    key: str,
    source: Source,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    optional: bool = False,
    hint: str = "",
) -> float | None:
    """A finite real number >= ``minimum`` (or > ``above``) and <= ``maximum``; ``None`` for "not set" when
    ``optional``."""
    if optional and is_not_set(value):
        return None
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    expected = "must be a finite number" + (f" {' and '.join(parts)}" if parts else "") + (f"; {hint}" if hint else "")
    result: float | None = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            result = None
    if result is None or not math.isfinite(result):
        raise source.fail(key, value, expected)
    if (
        (minimum is not None and result < minimum)
        or (above is not None and result <= above)
        or (maximum is not None and result > maximum)
    ):
        raise source.fail(key, value, expected)
    return result


def probability(
    value: Any, key: str, source: Source, *, zero: bool = False, optional: bool = False, hint: str = ""
) -> float | None:
    """A number in (0, 1] (``zero``: [0, 1])."""
    if zero:
        return number(value, key, source, minimum=0.0, maximum=1.0, optional=optional, hint=hint)
    return number(value, key, source, above=0.0, maximum=1.0, optional=optional, hint=hint)


def text(value: Any, key: str, source: Source, *, empty: bool = False, optional: bool = False) -> str | None:
    """A string (non-empty unless ``empty``); ``None`` for "not set" when ``optional`` (then ``none`` means not
    set; otherwise the text ``none`` is an error, since it is more likely a mistake than a marker)."""
    if optional and is_not_set(value):
        return None
    if isinstance(value, str):
        if value == "" and not empty:
            raise source.fail(key, value, "must not be empty")
        if value.strip().lower() == "none":
            raise source.fail(key, value, f"is not a usable text; leave {key} out for its default")
        return value
    raise source.fail(key, value, f"must be a text; quote it, e.g. {key}='{value}'")


def texts(value: Any, key: str, source: Source, *, optional: bool = True) -> tuple[str, ...]:
    """A list of non-empty strings (one string is a list of one); "not set" is the empty list when
    ``optional``."""
    if optional and value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) and item for item in items):
        raise source.fail(key, value, f"must be a non-empty text or a list of them; e.g. {key}=['\\n\\n', 'Q:']")
    return tuple(items)


def choice(value: Any, key: str, source: Source, choices: Collection[str]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise source.fail(key, value, f"is unknown; use one of {', '.join(sorted(choices))}")


def duplicated_keys(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    """The keys given more than once, in order of first repetition."""
    seen: set[str] = set()
    repeated: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def argparse_type(parse: Callable[..., T], key: str, **options: Any) -> Callable[[str], T]:
    """A command's flag parsed by ``parse`` (argparse then prints ``<prog>: error: argument <flag>: ...`` and
    exits with code 2, before the command does anything)."""

    def convert(raw: str) -> T:
        try:
            return parse(raw, key, Source(key), **options)
        except M1UserError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{key} ")) from None

    convert.__name__ = key.lstrip("-")  # argparse names the type in some messages
    return convert


def _bounds_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}" if maximum != MAX_TOKENS else f" >= {minimum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
