"""The seam between :class:`~m1_models.lm_eval_model.M1LM` and a generation backend: one small typed object.

A backend (``m1-vllm``: vLLM's engine in-process; ``m1-server``: OpenAI-compatible servers; ``m1-hf``:
transformers) builds a :class:`Backend` and hands it to :class:`~m1_models.lm_eval_model.M1LM`, which owns
everything else (gen_kwargs validation, the budget-forcing state machines, the schedule, lm-eval's cache hook,
records).  A new backend is one short module::

    class M1Foo(M1LM):                       # the class lm-eval instantiates from --model_args
        def __init__(self, pretrained: str, *, seed: int = 1234, schedule: str = "continuous", **kw):
            tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(pretrained))
            backend = Backend(
                model_name=pretrained,
                tokenizer=tokenizer,
                max_model_len=4096,
                sampling_keys=frozenset({"temperature", "top_p", "seed"}),
                start_engine=lambda: FooStepEngine(...),  # called once, at the first generation
            )
            super().__init__(backend, seed=seed, schedule=schedule)

plus its line in :data:`m1_eval.lm_eval_hook.MODELS` (and ``pyproject.toml``'s ``lm_eval.models`` entry points).

The engine (:class:`~m1_models.scheduling.StepEngine`) is started lazily, once per model, so that bad model_args
and gen_kwargs fail before any weights load; it then lives until :meth:`M1LM.close`, and its request ids stay
unique for its whole life (several ``generate_until`` calls share it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from m1_models.engine_types import BackendTokenizer, StepEngine


@dataclass(frozen=True)
class Backend:
    """What a backend provides :class:`~m1_models.lm_eval_model.M1LM` (composed, not inherited).

    * ``model_name``: written into every per-sample record;
    * ``tokenizer``: :class:`BackendTokenizer` (token accounting, the markers' check, the chat template);
    * ``max_model_len``: the context window every request is checked against before generation starts;
    * ``sampling_keys``: the sampling parameter names the engine accepts as gen_kwargs (others are an error);
    * ``start_engine``: returns the :class:`~m1_models.scheduling.StepEngine`; called once, at the first
      generation (weights load, servers are contacted for work, ... there).
    """

    model_name: str
    tokenizer: BackendTokenizer
    max_model_len: int
    sampling_keys: frozenset[str]
    start_engine: Callable[[], StepEngine]


#: strings up to this length are encoded once per tokenizer (markers, "Wait": several per request and round)
_ENCODE_CACHE_MAX_CHARS = 64


class HFTokenizer:
    """:class:`BackendTokenizer` over a Hugging Face tokenizer, special tokens kept.

    With a "fast" tokenizer, ids and texts come from its Rust ``tokenizers.Tokenizer`` directly: the controller
    encodes and decodes several times per request and phase, and transformers' per-call Python (argument
    handling, a type check of every id) cost more than the Rust call; on 2 CPU cores that time is taken from the
    engine's scheduler. The results are transformers' own (``add_special_tokens=False``; decode with special
    tokens and without clean-up, which for these arguments is exactly the Rust call), pinned by
    ``tests/test_tokenizer.py``. Short strings' ids are kept once computed.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer
        self._vocab: dict[str, int] | None = None
        self._short: dict[str, list[int]] = {}
        self._rust = None
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        if backend is not None:
            from tokenizers import Tokenizer

            # a copy, without the truncation or padding a tokenizer.json may carry (transformers switches them off
            # for a call without truncation/padding arguments; the copy has them off for good)
            self._rust = Tokenizer.from_str(backend.to_str())
            self._rust.no_truncation()
            self._rust.no_padding()

    @property
    def name(self) -> str:
        return str(getattr(self.hf, "name_or_path", "") or "tokenizer")

    @property
    def bos_token_id(self) -> int | None:
        return getattr(self.hf, "bos_token_id", None)

    @property
    def chat_template(self) -> str | None:
        return getattr(self.hf, "chat_template", None)

    def encode(self, text: str) -> list[int]:
        short = len(text) <= _ENCODE_CACHE_MAX_CHARS
        if short and text in self._short:
            return list(self._short[text])
        if self._rust is not None:
            ids = self._rust.encode(text, add_special_tokens=False).ids
        else:
            ids = list(self.hf(text, add_special_tokens=False)["input_ids"])
        if short:
            self._short[text] = list(ids)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        if self._rust is not None:
            return self._rust.decode(list(ids), skip_special_tokens=False)
        return self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def has_token(self, token: str) -> bool:
        if self._vocab is None:
            self._vocab = dict(self.hf.get_vocab())
        return token in self._vocab

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        return self.hf.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )


__all__ = ["Backend", "BackendTokenizer", "HFTokenizer"]
