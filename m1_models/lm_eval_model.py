"""The lm-eval model shared by every m1 backend: requests in, budget-forced texts out.

A backend (vLLM engine, server, transformers) supplies a :class:`~m1_models.backend.Backend`: a tokenizer (with
the chat template), its context window, the names of its sampling parameters and a
:class:`~m1_models.scheduling.StepEngine`; this class does the rest: gen_kwargs
validation (all requests, before any generation), the budget-forcing state machines, the schedule, lm-eval's
cache hook (so ``--use_cache`` resumes an interrupted run), per-sample records and the progress bar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from lm_eval.api.model import LM
from lm_eval.utils import handle_non_serializable, hash_string
from tqdm import tqdm

from m1_base import values
from m1_base.errors import ModelArgsError
from m1_models import env_report
from m1_models.backend import Backend, HFTokenizer
from m1_models.budget_forcing import ForcedRequest
from m1_models.engine_types import BackendTokenizer, StepEngine
from m1_models.records import REPEAT_KEY, SINK, RecordSink, make_record, repeat_args, request_hash
from m1_models.scheduling import SCHEDULES, run
from m1_models.settings import GenerationSettings, parse_gen_kwargs
from m1_models.step_sharing import StepSharing

logger = logging.getLogger(__name__)

_SPECIAL_MARKER = re.compile(r"<\|[A-Za-z0-9_]+\|>")


def doc_hash(doc: Any) -> str:
    """lm-eval's hash of a document, exactly as its evaluator writes ``doc_hash`` into the samples file."""
    return hash_string(json.dumps(doc, indent=2, default=handle_non_serializable, ensure_ascii=False))


def request_seed(base_seed: int, prompt: str) -> int:
    """A per-request seed: sampled runs do not depend on batch composition, order or resumption."""
    digest = hashlib.sha256(f"{base_seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def check_schedule(schedule: str) -> str:
    """A backend calls this first, before it loads anything (M1LM checks again)."""
    return values.choice(schedule, "schedule", values.MODEL_ARG, SCHEDULES)


def check_unique_keys(arg_string: str | None) -> None:
    """``key=value,...`` with a key given twice: one line naming it (lm-eval would keep the last silently).
    The values are not shown: one of them may be a secret (a key pasted into ``api_key_env``)."""
    pairs = [tuple(item.split("=", 1)) for item in str(arg_string or "").split(",") if "=" in item]
    repeated = values.duplicated_keys([(key.strip(), value) for key, value in pairs])
    if repeated:
        times = sum(1 for key, _ in pairs if key.strip() == repeated[0])
        raise ModelArgsError(f"model_arg {repeated[0]} is given {times} times; give it once")


def check_seed(seed: Any) -> int:
    """model_arg ``seed``: a whole number >= 0 (the engine's and every request's seed derive from it)."""
    return values.whole(seed, "seed", values.MODEL_ARG, minimum=0, maximum=2**63 - 1)  # type: ignore[return-value]


def _without_repeat(args: tuple[str, Any]) -> tuple[str, Any]:
    context, gen_kwargs = args
    if REPEAT_KEY not in (gen_kwargs or {}):
        return args
    return context, {k: v for k, v in gen_kwargs.items() if k != REPEAT_KEY}


class M1LM(LM):
    """The lm-eval model of ``m1-vllm``, ``m1-server`` and friends, over the :class:`Backend` it is given.

    A backend's registered class only builds its :class:`Backend` and passes it here (see
    :mod:`m1_models.backend`); the engine starts at the first generation and lives until :meth:`close`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        seed: int = 1234,
        schedule: str = "continuous",
        add_bos_token: bool = False,
    ) -> None:
        super().__init__()
        self.schedule = check_schedule(schedule)
        self.backend = backend
        self._engine: StepEngine | None = None
        self.seed = check_seed(seed)
        self.add_bos_token = values.boolean(add_bos_token, "add_bos_token", values.MODEL_ARG)
        self._checked_markers: set[tuple] = set()
        self._checked_sampling: set[str] = set()
        self._chat_formatted = False  # set when lm-eval renders prompts with the chat template
        self._warned_bare_prompt = False

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> M1LM:
        """lm-eval's, but a key given twice is an error (lm-eval keeps the last one silently)."""
        check_unique_keys(arg_string)
        return super().create_from_arg_string(arg_string, additional_config)

    # -- what the backend provides --------------------------------------------------------------------------
    @property
    def tokenizer(self) -> BackendTokenizer:
        return self.backend.tokenizer

    @property
    def model_name(self) -> str:
        return self.backend.model_name

    @property
    def max_model_len(self) -> int:
        return self.backend.max_model_len

    @property
    def sampling_keys(self) -> frozenset[str]:
        return self.backend.sampling_keys

    def step_engine(self) -> StepEngine:
        """The backend's engine, started on first use and kept (its request ids stay unique across calls)."""
        if self._engine is None:
            self._engine = self.backend.start_engine()
        return self._engine

    def close(self) -> None:
        """Abort what is in flight and release the engine (idempotent)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    #: where finished requests' records go (lm-eval runs: the process-wide sink the start-up hook writes out)
    record_sink: RecordSink = SINK
    #: show the "m1 generate" progress bar (a sweep draws its own)
    progress_bar: bool = True
    #: steps of one call with the same prefix generated once (m1_models/step_sharing.py); False: every request's
    #: steps go to the engine (benchmarks/nested_sweep.py measures one against the other)
    share_steps: bool = True

    def set_cache_hook(self, cache_hook) -> None:
        super().set_cache_hook(cache_hook)
        self.record_sink.attach_store(getattr(cache_hook, "dbdict", None))

    # -- lm-eval's chat template interface -------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name or self.model_name).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        template = self.tokenizer.chat_template
        if chat_template:
            self._chat_formatted = True
        if chat_template and not template:
            raise ModelArgsError(
                f"--apply_chat_template was given but the tokenizer of {self.model_name} has no chat template; "
                f"use a chat model (or pass tokenizer=<a tokenizer with a chat template>) or drop "
                f"--apply_chat_template"
            )
        return template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self.chat_template(True)
        # add_generation_prompt=False continues the last message: a task's gen_prefix prefills the assistant turn
        return self.tokenizer.render_chat(chat_history, add_generation_prompt=add_generation_prompt)

    # -- lm-eval's request types -----------------------------------------------------------------------------
    def loglikelihood(self, requests):
        raise NotImplementedError(
            "m1 models only generate text (generate_until tasks such as m1_table1); "
            "use lm-eval's hf or vllm model for log-likelihood tasks"
        )

    def loglikelihood_rolling(self, requests):
        return self.loglikelihood(requests)

    def _check_markers(self, settings: GenerationSettings) -> None:
        """Budget forcing needs the markers' special tokens (e.g. ``<|im_start|>``) in the model's vocabulary."""
        forcing = settings.forcing
        texts = (forcing.thinking_start, forcing.thinking_end, forcing.thinking_end_overflow, *forcing.until_thinking)
        wanted = sorted({m for text in texts for m in _SPECIAL_MARKER.findall(text)})
        missing = [marker for marker in wanted if not self.tokenizer.has_token(marker)]
        if missing:
            raise ModelArgsError(
                f"{self.model_name} cannot take the thinking markers: its tokenizer has no {missing[0]} token; "
                f"run it without max_tokens_thinking (as the paper ran its baselines) or set thinking_start, "
                f"thinking_end, thinking_end_overflow and until_thinking to markers the model knows"
            )

    def _settings(self, context: str, gen_kwargs: dict[str, Any], repeat: int = 0) -> GenerationSettings:
        settings = parse_gen_kwargs(gen_kwargs, self.sampling_keys)
        if settings.forcing.forced:
            key = (
                settings.forcing.thinking_start,
                settings.forcing.thinking_end,
                settings.forcing.thinking_end_overflow,
                settings.forcing.until_thinking,
            )
            if key not in self._checked_markers:
                self._check_markers(settings)
                self._checked_markers.add(key)
        sampling = settings.sampling
        checked = repr(sorted(sampling.items()))  # a task's requests share their gen_kwargs: check them once
        if checked not in self._checked_sampling:
            self.check_sampling(sampling)
            self._checked_sampling.add(checked)
        temperature = float(sampling.get("temperature", 1.0) or 0.0)
        if temperature > 0 and "seed" not in sampling:
            sampling["seed"] = request_seed(self.seed, context if not repeat else f"{context}\x00repeat {repeat}")
        elif temperature > 0 and repeat:  # a seed given in gen_kwargs: each repeat its own, derived from it
            sampling["seed"] = request_seed(int(sampling["seed"]), f"repeat {repeat}")
        return settings

    def check_sampling(self, sampling: dict[str, Any]) -> None:
        """Raise :class:`~m1_base.errors.GenKwargsError` for sampling values the engine would refuse.

        Called once for each distinct set of sampling gen_kwargs (a task's requests share theirs), before the
        first step is submitted, so that a bad value ends the call before
        any generation (and before a lazily started engine loads its weights) rather than in the middle of it.
        A backend overrides it with its engine's own checks; by default the engine is left to judge."""

    @staticmethod
    def _repeats(requests) -> list[int]:
        """Which sample of its request each one is: lm-eval's ``repeats: K`` hands the model K identical requests
        (numbered 0 ... K-1 in order), or ``--use_cache`` the ones it did not have, numbered already
        (:func:`m1_models.records.number_repeats`)."""
        seen: dict[str, int] = {}
        out = []
        for request in requests:
            gen_kwargs = dict(request.args[1] or {})
            if REPEAT_KEY in gen_kwargs:
                out.append(values.whole(gen_kwargs[REPEAT_KEY], REPEAT_KEY, values.GEN_KWARG, minimum=0))
                continue
            key = request_hash(*request.args)
            out.append(seen.get(key, 0))
            seen[key] = out[-1] + 1
        return out

    def _encode_prompt(self, context: str) -> list[int]:
        ids = self.tokenizer.encode(context)
        bos = self.tokenizer.bos_token_id
        if self.add_bos_token and bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        if not requests:
            return []
        prepared: list[tuple[list[int], GenerationSettings, str]] = []
        longest: dict[str, int] = {}  # longest prompt per gen_kwargs group (the s1 preset's auto budget uses it)
        encoded: dict[str, list[int]] = {}  # a sweep's settings and a task's repeats share their prompts
        repeats = self._repeats(requests)
        for request, repeat in zip(requests, repeats, strict=True):  # validate all before the first token
            context, gen_kwargs = request.args
            gen_kwargs = {k: v for k, v in dict(gen_kwargs or {}).items() if k != REPEAT_KEY}
            settings = self._settings(context, gen_kwargs, repeat)
            prompt_ids = encoded.get(context)
            if prompt_ids is None:
                prompt_ids = encoded[context] = self._encode_prompt(context)
            # the s1 fork computes auto per batch, and lm-eval batches (--batch_size auto) per identical gen_kwargs
            group = repr(sorted(gen_kwargs.items()))
            longest[group] = max(longest.get(group, 0), len(prompt_ids))
            prepared.append((prompt_ids, settings, group))
        states = [
            ForcedRequest(prompt_ids, settings, self.tokenizer, self.max_model_len, longest_prompt=longest[group])
            for prompt_ids, settings, group in prepared
        ]
        forced = sum(state.forcing.forced for state in states)
        if forced and not self._chat_formatted and not self._warned_bare_prompt:
            self._warned_bare_prompt = True
            logger.warning(
                "m1-eval: budget forcing without --apply_chat_template: the thinking marker follows the bare "
                "prompt, not the model's assistant turn as in the paper; add --apply_chat_template"
            )
        logger.info(
            "m1-eval: generating %d requests (%d with budget forcing, schedule=%s)",
            len(states),
            forced,
            self.schedule,
        )
        quiet = disable_tqdm or not self.progress_bar or self.rank != 0
        progress = tqdm(total=len(states), desc="m1 generate", disable=quiet)

        texts: list[str | None] = [None] * len(states)  # each request's text, decoded once as it finishes

        def finished(index: int) -> None:
            request, state = requests[index], states[index]
            text = texts[index] = state.output_text()
            args = repeat_args(_without_repeat(request.args), repeats[index])
            self.cache_hook.add_partial("generate_until", args, text)
            self.record_sink.add(
                make_record(
                    task=request.task_name,
                    doc_id=request.doc_id,
                    doc_hash=doc_hash(request.doc),
                    prompt_hash=hash_string(request.args[0]),
                    request_hash=request_hash(*args),
                    repeat=repeats[index],
                    model=self.model_name,
                    schedule=self.schedule,
                    **state.record.fields(),  # GenerationRecord's fields, by their names
                )
            )
            progress.update(1)

        try:
            env_report.prefetch()  # lm-eval's environment report, collected while the engine starts
            engine = self.step_engine()
            if self.share_steps:
                engine = StepSharing(engine, self.tokenizer)
            run(states, engine, self.schedule, on_done=finished)
            if isinstance(engine, StepSharing) and engine.taken:
                logger.info(
                    "m1-eval: %d steps taken from requests with the same prefix, %d engine calls",
                    engine.taken,
                    engine.calls,
                )
        finally:
            progress.close()
        return [text if text is not None else state.output_text() for text, state in zip(texts, states, strict=True)]


__all__ = ["Backend", "HFTokenizer", "M1LM", "check_schedule", "doc_hash", "request_seed"]
