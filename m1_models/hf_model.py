"""``m1-hf``: budget forcing on a transformers causal LM (CPU, CUDA or MPS), for users without vLLM.

The controller, validation, schedules and records are the shared ones (:class:`~m1_models.lm_eval_model.M1LM`,
contract in ``docs/budget-forcing.md``); this module only supplies a
:class:`~m1_models.scheduling.StepEngine` that runs steps on the model:

* steps are queued by :meth:`HFStepEngine.submit`; each :meth:`HFStepEngine.poll` takes the queued steps of the
  oldest step's phase (at most ``batch_size``), left-pads them into one batch (attention mask, position ids) and
  decodes them with a KV cache until every row has finished; finished rows leave the batch (and the cache) at
  once, so a long row does not drag finished ones along;
* every row stops on its own, as vLLM stops a request: its ``max_tokens`` exactly, EOS (the tokenizer's and the
  generation config's) and its step's stop token ids, and its stop strings, matched on the text decoded with
  special tokens kept (``<|im_start|>`` is a stop string of the thinking phase); ``min_tokens`` holds back EOS,
  the stop token ids and stop strings as vLLM does;
* the result has vLLM's shape: the ids through the token that completed the stop string (EOS included), the
  text cut before the stop string, ``finish_reason`` ``"stop"`` or ``"length"``;
* sampling per row: ``temperature`` (0: greedy), ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty`` and
  ``seed`` (a ``torch.Generator`` per step seeded with it, so a seeded request's text does not depend on the
  other requests of its batch beyond the numerics of padding).

The weights load lazily, at the first generation, after every request has been validated (as ``m1-vllm``).

One module of ~490 lines on purpose: the step engine (batching, per-row stopping, sampling) and the lm-eval
model class that builds it are one backend, and the backend contract asks for "one short module plus its
registration"; splitting the per-row stop and sampling rules away from the decode loop that applies them would
put one mechanism in two files.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m1_base import values
from m1_base.errors import GenKwargsError, ModelArgsError
from m1_models.backend import Backend, HFTokenizer
from m1_models.engine_types import GenerationStep, StepResult
from m1_models.lm_eval_model import M1LM, check_schedule, check_seed, check_unique_keys

logger = logging.getLogger(__name__)

#: the sampling gen_kwargs m1-hf understands (vLLM's names and defaults: temperature 1, top_p 1, top_k off)
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed"})
#: below this temperature a row decodes greedily (vLLM's _SAMPLING_EPS)
GREEDY_EPS = 1e-5
DTYPES = ("auto", "float32", "float16", "bfloat16", "float", "half")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Sampling:
    """One step's sampling parameters, checked."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off (vLLM)
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_EPS

    @classmethod
    def from_dict(cls, sampling: dict[str, Any]) -> Sampling:
        def number(key: str, kind: type, default: Any, ok, rule: str) -> Any:
            value = sampling.get(key, default)
            if value is None:
                return default
            try:
                parsed = kind(value)
            except (TypeError, ValueError):
                raise GenKwargsError(f"gen_kwarg {key}={value!r} is not a number; {rule}") from None
            if not ok(parsed):
                raise GenKwargsError(f"gen_kwarg {key}={value!r} is out of range; {rule}")
            return parsed

        seed = sampling.get("seed")
        return cls(
            temperature=number("temperature", float, 1.0, lambda t: t >= 0, "pass temperature>=0 (0: greedy)"),
            top_p=number("top_p", float, 1.0, lambda p: 0 < p <= 1, "pass 0<top_p<=1"),
            top_k=number("top_k", int, 0, lambda k: k >= -1, "pass top_k>=1, or 0/-1 for all tokens"),
            min_p=number("min_p", float, 0.0, lambda p: 0 <= p <= 1, "pass 0<=min_p<=1"),
            repetition_penalty=number(
                "repetition_penalty", float, 1.0, lambda r: r > 0, "pass repetition_penalty>0 (1: off)"
            ),
            seed=None if seed is None else number("seed", int, None, lambda s: True, "pass an integer seed"),
        )


@dataclass
class _Row:
    """One step being decoded."""

    key: int
    step: GenerationStep
    sampling: Sampling
    stop_ids: frozenset[int]  # EOS ids + the step's stop token ids: end the step, not part of the text
    generator: Any = None
    generated: list[int] = field(default_factory=list)
    text: str = ""
    prefix: int = 0  # incremental detokenization offsets (as vLLM's slow detokenizer)
    read: int = 0
    result: StepResult | None = None


class HFStepEngine:
    """:class:`~m1_models.scheduling.StepEngine` over a transformers causal LM, batched by phase."""

    max_open_requests = 0  # a request holds nothing here between its steps (see engine_types.StepEngine)

    def colocate(self, key: int, with_key: int) -> None:
        """One place to run: nothing to choose (see engine_types.StepEngine)."""

    def __init__(
        self,
        model: Any,
        tokenizer: HFTokenizer,
        *,
        eos_ids: Sequence[int],
        pad_id: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int = 1234,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        self.pad_id = int(pad_id)
        self.batch_size = max(1, int(batch_size))
        self._queue: deque[tuple[int, GenerationStep, Sampling]] = deque()
        self._in_flight: set[int] = set()
        self._unseeded = torch.Generator(device=self.device).manual_seed(int(seed))

    # -- the StepEngine protocol ---------------------------------------------------------------------------
    def submit(self, key: int, step: GenerationStep) -> None:
        if key in self._in_flight:
            raise RuntimeError(f"request {key} already has a step in flight")
        if step.max_tokens < 1:
            raise ValueError(f"a step must allow at least one token (max_tokens={step.max_tokens})")
        self._queue.append((key, step, Sampling.from_dict(step.sampling)))
        self._in_flight.add(key)

    def poll(self) -> list[tuple[int, StepResult]]:
        if not self._queue:
            return []
        phase = self._queue[0][1].phase
        batch: list[tuple[int, GenerationStep, Sampling]] = []
        rest: deque[tuple[int, GenerationStep, Sampling]] = deque()
        for item in self._queue:
            (batch if item[1].phase is phase and len(batch) < self.batch_size else rest).append(item)
        self._queue = rest
        rows = [self._row(key, step, sampling) for key, step, sampling in batch]
        self._decode(rows)
        done = []
        for row in rows:
            self._in_flight.discard(row.key)
            assert row.result is not None
            done.append((row.key, row.result))
        return done

    def abort(self) -> None:
        """Drop every queued step (a batch is decoded within one poll(), so nothing else is in flight)."""
        self._queue.clear()
        self._in_flight.clear()

    def close(self) -> None:
        self.abort()

    # -- decoding ------------------------------------------------------------------------------------------
    def _row(self, key: int, step: GenerationStep, sampling: Sampling) -> _Row:
        generator = None
        if not sampling.greedy:
            generator = (
                self._unseeded
                if sampling.seed is None
                else self._torch.Generator(device=self.device).manual_seed(sampling.seed & 0xFFFF_FFFF_FFFF_FFFF)
            )
        return _Row(key, step, sampling, self.eos_ids | frozenset(step.stop_token_ids), generator)

    def _decode(self, rows: list[_Row]) -> None:
        torch = self._torch
        longest = max(len(row.step.prompt_ids) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's next token is at the same column
            ids = row.step.prompt_ids
            input_ids[i, longest - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, longest - len(ids) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        cache = DynamicCache()
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            active = list(rows)
            next_position = positions[:, -1:] + 1
            while True:
                logits = out.logits[:, -1, :].float()
                tokens = [self._choose(row, logits[i]) for i, row in enumerate(active)]
                keep = [i for i, (row, token) in enumerate(zip(active, tokens)) if not self._append(row, token)]
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, dtype=torch.long, device=self.device)
                    cache.batch_select_indices(index)
                    attention = attention.index_select(0, index)
                    next_position = next_position.index_select(0, index)
                    active = [active[i] for i in keep]
                    tokens = [tokens[i] for i in keep]
                attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
                out = self.model(
                    input_ids=torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None],
                    attention_mask=attention,
                    position_ids=next_position,
                    past_key_values=cache,
                    use_cache=True,
                )
                next_position = next_position + 1

    def _choose(self, row: _Row, logits: Any) -> int:
        torch = self._torch
        sampling = row.sampling
        if len(row.generated) < row.step.min_tokens and row.stop_ids:
            logits = logits.clone()
            logits[list(row.stop_ids)] = float("-inf")  # vLLM's min_tokens: EOS and stop token ids held back
        if sampling.repetition_penalty != 1.0:  # vLLM/HF: over the prompt and the output so far
            seen = torch.tensor(sorted({*row.step.prompt_ids, *row.generated}), device=logits.device)
            picked = logits[seen]
            logits = logits.clone()
            logits[seen] = torch.where(
                picked > 0, picked / sampling.repetition_penalty, picked * sampling.repetition_penalty
            )
        if sampling.greedy:
            return int(torch.argmax(logits))
        logits = logits / sampling.temperature
        if 0 < sampling.top_k < logits.shape[-1]:
            kth = torch.topk(logits, sampling.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if sampling.top_p < 1.0:
            ordered, order = torch.sort(probs, descending=True)
            outside = ordered.cumsum(-1) - ordered > sampling.top_p  # keep the smallest set reaching top_p
            probs = probs.scatter(0, order, ordered.masked_fill(outside, 0.0))
        if sampling.min_p > 0.0:
            probs = probs.masked_fill(probs < sampling.min_p * probs.max(), 0.0)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _append(self, row: _Row, token: int) -> bool:
        """Add one token to a row; True when the row's step has finished (its result is set)."""
        row.generated.append(token)
        step = row.step
        if token in row.stop_ids:  # as vLLM's check_stop: EOS / stop token ids first, not detokenized
            self._finish(row, "stop", self._decode_ids(row.generated[:-1]))
            return True
        new = self._detokenize(row)
        if new and step.stop and len(row.generated) > step.min_tokens:
            match = _find_stop(row.text, len(new), step.stop)
            if match is not None:
                self._finish(row, "stop", row.text[:match])
                return True
        if len(row.generated) >= step.max_tokens:
            self._finish(row, "length", self._decode_ids(row.generated))
            return True
        return False

    def _detokenize(self, row: _Row) -> str:
        """The text the newest token adds (empty while it is an incomplete UTF-8 sequence)."""
        before = self._decode_ids(row.generated[row.prefix : row.read])
        after = self._decode_ids(row.generated[row.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            new = after[len(before) :]
            row.text += new
            row.prefix, row.read = row.read, len(row.generated)
            return new
        return ""

    def _decode_ids(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    @staticmethod
    def _finish(row: _Row, reason: str, text: str) -> None:
        row.result = StepResult(token_ids=tuple(row.generated), text=text, finish_reason=reason)


def _find_stop(text: str, new_chars: int, stops: Sequence[str]) -> int | None:
    """Where the stop string completed earliest by the newest text begins (vLLM's check_stop_strings)."""
    best: tuple[int, int] | None = None
    for stop in stops:
        if not stop:
            continue
        at = text.find(stop, max(0, len(text) - new_chars - len(stop) + 1))
        if at >= 0 and (best is None or at + len(stop) < best[0]):
            best = (at + len(stop), at)
    return None if best is None else best[1]


def resolve_device(device: str | None) -> str:
    """``auto``: CUDA, else MPS, else CPU.  A CUDA device on a machine without CUDA (lm-eval's ``--device``
    defaults to ``cuda:0``) falls back to the best device there is, with a warning, as lm-eval's ``hf`` does."""
    import torch

    def best() -> str:
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    name = str(device or "auto").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in DEVICES:
        raise ModelArgsError(f"model_arg device={device!r} is unknown; use one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        return best()
    if kind == "cuda" and not torch.cuda.is_available():
        logger.warning("m1-hf: device=%s asked for, but CUDA is not available; using %s", name, best())
        return best()
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelArgsError("model_arg device=mps: MPS is not available on this machine; use device=cpu")
    return name


class M1HF(M1LM):
    """lm-eval model ``m1-hf``: the budget-forcing controller on a transformers ``AutoModelForCausalLM``."""

    def __init__(
        self,
        pretrained: str,
        *,
        tokenizer: str | None = None,
        revision: str | None = None,
        dtype: str | None = None,
        device: str | None = "auto",
        max_model_len: int | None = None,
        seed: int = 1234,
        schedule: str = "continuous",
        add_bos_token: bool = False,
        trust_remote_code: bool = False,
        batch_size: Any = "auto",
        max_batch_size: Any = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            name = sorted(unknown)[0]
            raise ModelArgsError(
                f"model_arg {name!r} is not an m1-hf argument; use pretrained, tokenizer, revision, dtype, device, "
                f"max_model_len, seed, schedule, add_bos_token, trust_remote_code, batch_size"
            )
        check_schedule(schedule)
        check_seed(seed)
        values.boolean(add_bos_token, "add_bos_token", values.MODEL_ARG)
        pretrained = values.text(pretrained, "pretrained", values.MODEL_ARG)  # type: ignore[assignment]
        max_model_len = values.token_count(max_model_len, "max_model_len", values.MODEL_ARG, optional=True)
        expanded = Path(str(pretrained)).expanduser()
        if str(pretrained).startswith((".", "/", "~")) and not expanded.exists():
            raise ModelArgsError(
                f"model_arg pretrained={pretrained} is not a folder that exists; pass a local model folder or a "
                f"Hugging Face model id (e.g. UCSC-VLAA/m1-7B-23K)"
            )
        self._source = str(expanded) if expanded.exists() else str(pretrained)
        self._revision = revision
        self._trust = values.boolean(trust_remote_code, "trust_remote_code", values.MODEL_ARG)
        self._torch_device = resolve_device(device)
        self._dtype = _resolve_dtype(dtype, self._torch_device)
        self.batch_size = _resolve_batch_size(batch_size)
        from transformers import AutoConfig, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(self._source, revision=revision, trust_remote_code=self._trust)
            hf_tokenizer = AutoTokenizer.from_pretrained(
                tokenizer or self._source, revision=None if tokenizer else revision, trust_remote_code=self._trust
            )
        except (OSError, ValueError) as error:
            reason = " ".join(str(error).split())
            raise ModelArgsError(f"m1-hf cannot read the model or tokenizer {pretrained}: {reason[:400]}") from None
        window = getattr(config, "max_position_embeddings", None)
        if max_model_len is not None:
            if window and max_model_len > window:
                raise ModelArgsError(
                    f"model_arg max_model_len={max_model_len} exceeds the model's max_position_embeddings={window}; "
                    f"lower it or leave it out"
                )
        elif not window:
            raise ModelArgsError(f"{pretrained} does not say its context window; pass model_arg max_model_len")
        self._config = config
        self._model: Any = None
        backend = Backend(
            model_name=str(pretrained),
            tokenizer=HFTokenizer(hf_tokenizer),
            max_model_len=int(max_model_len or window),
            sampling_keys=SAMPLING_KEYS,
            start_engine=self._start_engine,
        )
        super().__init__(backend, seed=seed, schedule=schedule, add_bos_token=add_bos_token)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> M1HF:
        """model_args win over lm-eval's ``--device`` / ``--batch_size`` (which it always passes, ``cuda:0`` and
        1 by default) instead of clashing with them."""
        from lm_eval.utils import simple_parse_args_string

        check_unique_keys(arg_string)
        args = simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
        return cls(**args, **extra)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> M1HF:
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    def check_sampling(self, sampling: dict[str, Any]) -> None:
        """The step engine's parse of the sampling parameters, before any step is submitted."""
        Sampling.from_dict(sampling)

    @property
    def model(self) -> Any:
        """The transformers model, loaded on first use (the weights load here)."""
        if self._model is None:
            from transformers import AutoModelForCausalLM

            logger.info("m1-hf: loading %s on %s (%s)", self.model_name, self._torch_device, self._dtype)
            model = AutoModelForCausalLM.from_pretrained(
                self._source, revision=self._revision, trust_remote_code=self._trust, dtype=self._dtype
            )
            self._model = model.to(self._torch_device).eval()
        return self._model

    def _start_engine(self) -> HFStepEngine:
        tokenizer = self.backend.tokenizer
        assert isinstance(tokenizer, HFTokenizer)
        return HFStepEngine(
            self.model,
            tokenizer,
            eos_ids=_eos_ids(tokenizer.hf, self.model),
            pad_id=_pad_id(tokenizer.hf, self._config),
            batch_size=self.batch_size,
            seed=self.seed,
        )

    def close(self) -> None:
        """Drop queued steps and the weights (the next generation loads them again)."""
        super().close()
        self._model = None


def _resolve_dtype(dtype: str | None, device: str) -> Any:
    name = str(dtype or ("float32" if device == "cpu" else "auto")).strip().lower().removeprefix("torch.")
    if name not in DTYPES:
        raise ModelArgsError(f"model_arg dtype={dtype!r} is unknown; use one of {', '.join(DTYPES)}")
    if name == "auto":
        return "auto"
    import torch

    return {"float": torch.float32, "half": torch.float16}.get(name) or getattr(torch, name)


def _resolve_batch_size(batch_size: Any) -> int:
    text = str(batch_size if batch_size is not None else "auto").strip().lower()
    if text.startswith("auto"):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ModelArgsError(f"model_arg batch_size={batch_size!r} must be an integer >= 1 or auto")
    return size


def _eos_ids(hf_tokenizer: Any, model: Any) -> list[int]:
    """The tokenizer's EOS and the generation config's (vLLM stops at both)."""
    ids: list[int] = []
    candidates: list[Any] = [getattr(hf_tokenizer, "eos_token_id", None)]
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    candidates += list(configured) if isinstance(configured, (list, tuple)) else [configured]
    for candidate in candidates:
        if candidate is not None and int(candidate) not in ids:
            ids.append(int(candidate))
    return ids


def _pad_id(hf_tokenizer: Any, config: Any) -> int:
    for candidate in (getattr(hf_tokenizer, "pad_token_id", None), getattr(config, "pad_token_id", None)):
        if candidate is not None:
            return int(candidate)
    eos = getattr(hf_tokenizer, "eos_token_id", None)
    return int(eos) if eos is not None else 0  # padded positions are masked: any id will do


__all__ = ["HFStepEngine", "M1HF", "SAMPLING_KEYS", "Sampling"]
