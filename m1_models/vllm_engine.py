"""The :class:`~m1_models.scheduling.StepEngine` over vLLM's ``LLMEngine``: steps in, results out, one engine step
per :meth:`VLLMStepEngine.poll`.

A budget-forced request is several steps (thinking, each "Wait" round, the answer), each continuing the ids of the
one before.  Submitted as separate vLLM requests, every continuation re-prefills the partial last KV block of the
request (prefix caching reuses whole blocks only: up to ``block_size - 1`` tokens per continuation, 16.6k tokens in
a 256-request benchmark run).  Here the steps of a request run as one vLLM *streaming-input session* instead
(``resumable`` requests, vLLM >= 0.12): the engine keeps the request's KV between its steps and prefills only the
appended ids.

vLLM's sessions refuse stop strings (it matches them on the text it streams out, after the engine has moved on),
so a step runs in a session only when each of its stop strings is one special token of the vocabulary (m1's
``<|im_start|>`` and ``<|im_end|>``): the engine stops on their ids, and :func:`text_stop` checks the text
afterwards for the same string spelled from ordinary tokens, cutting where vLLM's stop-string check would have (the
KV then holds more than the request keeps, so the next step no longer extends it and starts a fresh session).  The
results are the ones vLLM's stop strings give (pinned by tests against the plain path and the other backends).
A plain generation (no forcing) is one request; when its stop strings are special tokens too (or none: m1's
tasks stop at EOS) it is stopped the same way and its text decoded once, sparing vLLM's token-by-token
detokenization.  Steps with other stop strings (a task's ``until`` text, the s1 preset's answer) or with
``min_tokens`` are one vLLM request each, with vLLM's own stop strings.

A seeded step (sampling) draws from its own random stream, seeded from the request's seed and where the step
starts (:func:`m1_models.budget_forcing.step_seed`).  vLLM keeps a session's generator across its inputs; the
plugin :mod:`m1_models.vllm_step_seeds`, which vLLM loads in its processes, starts a new stream when an input
brings a new seed.  Where vLLM does not load it (``VLLM_PLUGINS`` leaves it out), seeded steps are one request
each, stopped by id all the same.  Either way a seeded request's text is the same on every engine path (sessions
or not, m1-server's HTTP calls), and a nested sweep's smaller settings can take their steps from the larger ones.
The model_arg ``sessions=false`` (or a vLLM without sessions) gives one request per step.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from m1_models.engine_types import GenerationStep, Phase, StepResult
from m1_models.vllm_step_seeds import loaded_by_vllm

logger = logging.getLogger(__name__)


@dataclass
class _Session:
    """A request whose KV the engine keeps between its steps."""

    request_id: str
    known: list[int]  # the ids whose KV the session holds: its prompts and every generated id but the last
    reported: int = 0  # output ids the engine reported so far (its count runs on across the session's steps)
    kept: int = 0  # ids of the step in flight's prompt whose KV the session already held when it was sent
    stops: tuple[str, ...] = ()  # the stop strings of the step in flight
    final: bool = False  # the step in flight is the request's last: the engine ends the session after it


def text_stop(
    ids: Sequence[int], stops: Sequence[str], decode: Callable[[Sequence[int]], str]
) -> tuple[int, str] | None:
    """Where vLLM's stop strings would have ended a generation of ``ids``: the number of ids it keeps (through
    the one whose text completes a stop string) and the text cut before that stop string; None when no stop
    string occurs in the text.  vLLM's own check (``check_stop_strings``) run after every id, as its detokenizer
    runs it; only when a stop string is in the text at all (rare: the ids of the special tokens stopped the
    engine already)."""
    from vllm.v1.engine.detokenizer import check_stop_strings

    if not stops or not any(stop in decode(ids) for stop in stops):
        return None
    text = ""
    for end in range(1, len(ids) + 1):
        longer = decode(ids[:end])
        found = check_stop_strings(longer, len(longer) - len(text), list(stops), False)
        if found is not None:
            return end, longer if found[1] == -1 else longer[: found[1]]
        text = longer
    return None


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """The tokenizer's special added tokens (``<|im_start|>``, ...) and their ids."""
    hf = getattr(tokenizer, "hf", tokenizer)
    added = getattr(hf, "added_tokens_decoder", None) or {}
    return {token.content: int(token_id) for token_id, token in added.items() if getattr(token, "special", False)}


def supports_sessions(engine: Any) -> bool:
    """Whether this vLLM's input processor builds resumable (streaming-input) requests."""
    process_inputs = getattr(getattr(engine, "input_processor", None), "process_inputs", None)
    return process_inputs is not None and "resumable" in inspect.signature(process_inputs).parameters


class VLLMStepEngine:
    """:class:`~m1_models.scheduling.StepEngine` over ``vllm.LLMEngine``; see the module docstring.

    Request ids (``m1-<n>``) come from one counter for the life of the engine object, which :class:`M1LM` keeps
    for the life of the model: a step aborted in one call can never be mistaken for a step of a later call.
    ``sessions=False`` (or a vLLM without sessions) runs every step as its own request.
    """

    def __init__(self, engine: Any, tokenizer: Any, *, sessions: bool = True) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        self._engine = engine
        self._tokenizer = tokenizer
        self._params = SamplingParams
        self._prompt = TokensPrompt
        self._final_only = RequestOutputKind.FINAL_ONLY
        self._keys: dict[str, int] = {}  # request id of each step in flight -> its key
        self._ids = itertools.count()
        self._sessions: dict[int, _Session] = {}  # key -> its open session
        self._checked: dict[str, tuple[str, ...]] = {}  # request id of a one-step request stopped by id -> stops
        self.sessions = bool(sessions and supports_sessions(engine))
        self._reseeds = self.sessions and loaded_by_vllm()
        self._special = special_token_ids(tokenizer) if self.sessions else {}
        self._tasks: Any = None

    @property
    def max_open_requests(self) -> int:
        """How many requests the engine holds at once (its scheduler's max_num_seqs): a session between two of
        its steps keeps its slot, so a schedule that holds every request between rounds goes in waves of this.
        0 without sessions: a request then holds nothing between its steps."""
        return int(self._engine.vllm_config.scheduler_config.max_num_seqs) if self.sessions else 0

    def colocate(self, key: int, with_key: int) -> None:
        """One engine: nothing to choose (its prefix cache holds the prefix already)."""

    # -- StepEngine --------------------------------------------------------------------------------------------
    def submit(self, key: int, step: GenerationStep) -> None:
        stop_ids = self._stop_ids(step)
        # a seeded step draws from its own stream (budget_forcing.step_seed): in a session only where vLLM loads
        # the plugin that re-seeds a session's stream (m1_models/vllm_step_seeds.py)
        seeded = step.sampling.get("seed") is not None
        if stop_ids is not None and step.phase is not Phase.PLAIN and (self._reseeds or not seeded):
            self._submit_to_session(key, step, stop_ids)
            return
        self._end_session(key)
        request_id = f"m1-{next(self._ids)}"
        self._keys[request_id] = key
        if stop_ids is not None:  # one step (no forcing, or seeded): stopped by id, its text decoded once, checked
            self._checked[request_id] = step.stop
            params = self._by_id_params(step, stop_ids)
            self._engine.add_request(request_id, self._prompt(prompt_token_ids=list(step.prompt_ids)), params)
            return
        sampling = dict(step.sampling)
        if step.min_tokens > 0:  # budget_preset=s1's ignore rounds: vLLM then holds back EOS and stop_token_ids
            sampling["min_tokens"] = min(step.min_tokens, step.max_tokens)
        if step.stop_token_ids:
            sampling["stop_token_ids"] = [*(sampling.get("stop_token_ids") or ()), *step.stop_token_ids]
        params = self._params(
            **sampling,
            max_tokens=step.max_tokens,
            stop=list(step.stop) or None,
            skip_special_tokens=False,  # special-token stop strings only match on the text they appear in
            spaces_between_special_tokens=False,
            output_kind=self._final_only,
            skip_clone=True,  # built for this one request: vLLM's deep copy of it (per add_request) is wasted
        )
        self._engine.add_request(request_id, self._prompt(prompt_token_ids=list(step.prompt_ids)), params)

    def poll(self) -> list[tuple[int, StepResult]]:
        done = []
        for output in self._engine.step():
            completion = output.outputs[0]
            # a session's step ends with a finish reason on an output that is not "finished" (the session goes on)
            if completion.finish_reason is None or output.request_id not in self._keys:  # not ours any more: aborted
                continue
            if completion.finish_reason in ("abort", "error"):
                raise RuntimeError(
                    f"the vLLM engine ended a request with finish_reason={completion.finish_reason!r}; "
                    f"see the engine's log above"
                )
            key = self._keys.pop(output.request_id)
            session = self._sessions.get(key)
            if session is not None and session.request_id == output.request_id:
                result = self._session_result(key, session, output)
            elif output.request_id in self._checked:
                stops = self._checked.pop(output.request_id)
                result = self._checked_result(list(completion.token_ids), completion, stops, output.num_cached_tokens)
            else:
                result = StepResult(
                    token_ids=tuple(completion.token_ids),
                    text=completion.text,
                    finish_reason=str(completion.finish_reason or "stop"),
                    cached_tokens=int(output.num_cached_tokens or 0),
                )
            done.append((key, result))
        return done

    def abort(self) -> None:
        ids = set(self._keys) | {session.request_id for session in self._sessions.values()}
        if ids:
            self._engine.abort_request(sorted(ids), internal=True)
        self._keys.clear()
        self._sessions.clear()
        self._checked.clear()

    def close(self) -> None:
        self.abort()

    # -- stopping by id: sessions, and one-step requests ----------------------------------------------------
    def _stop_ids(self, step: GenerationStep) -> tuple[int, ...] | None:
        """The step's stop strings as token ids when each is one special token (none: no stop strings), else
        None: the step then runs with vLLM's own stop strings."""
        if not self.sessions or step.min_tokens > 0:
            return None
        ids = tuple(self._special.get(stop, -1) for stop in step.stop)
        return None if -1 in ids else ids

    def _by_id_params(self, step: GenerationStep, stop_ids: tuple[int, ...]) -> Any:
        sampling = dict(step.sampling)
        if stop_ids:
            sampling["stop_token_ids"] = [*(sampling.get("stop_token_ids") or ()), *stop_ids]
        return self._params(
            **sampling,
            max_tokens=step.max_tokens,
            detokenize=False,  # the text is decoded once per step here, not token by token by the engine
            output_kind=self._final_only,
            skip_clone=True,
        )

    def _submit_to_session(self, key: int, step: GenerationStep, stop_ids: tuple[int, ...]) -> None:
        params = self._by_id_params(step, stop_ids)
        ids = list(step.prompt_ids)
        session = self._sessions.get(key)
        if session is not None and not (len(ids) > len(session.known) and ids[: len(session.known)] == session.known):
            self._end_session(key)  # the step does not continue what the session holds (a cut stop string)
            session = None
        if session is None:
            session = _Session(f"m1-{next(self._ids)}", [])
            self._sessions[key] = session
        appended = ids[len(session.known) :]
        session.kept = len(session.known)
        session.known = ids
        session.stops = step.stop
        self._keys[session.request_id] = key
        self._send(session.request_id, appended, params, resumable=True)
        if step.phase is Phase.ANSWER:  # the request's last step: the engine ends the session once it is done
            session.final = True
            self._send(session.request_id, [0], params, resumable=False)

    def _send(self, request_id: str, ids: list[int], params: Any, *, resumable: bool) -> None:
        """``LLMEngine.add_request`` for a session's request: it keeps the same id for all its steps (LLMEngine
        would append a random suffix to each), as vLLM's ``AsyncLLM`` does for its streaming inputs."""
        engine = self._engine
        if self._tasks is None:
            self._tasks = engine.get_supported_tasks()
        request = engine.input_processor.process_inputs(
            request_id, self._prompt(prompt_token_ids=ids), params, supported_tasks=self._tasks, resumable=resumable
        )
        request.external_req_id = request_id
        engine.output_processor.add_request(request, None, None, 0)
        engine.engine_core.add_request(request)

    def _end_session(self, key: int) -> None:
        session = self._sessions.pop(key, None)
        if session is not None and not session.final:
            self._engine.abort_request([session.request_id], internal=True)

    def _session_result(self, key: int, session: _Session, output: Any) -> StepResult:
        completion = output.outputs[0]
        ids = list(completion.token_ids[session.reported :])  # the engine reports the session's ids so far
        session.reported = len(completion.token_ids)
        session.known += ids[:-1]  # vLLM keeps the KV of every id but the last sampled one
        if session.final:
            del self._sessions[key]
        # the prompt ids not prefilled again: the prefix cache's hit for a session's first step, then what it kept
        return self._checked_result(ids, completion, session.stops, session.kept or output.num_cached_tokens)

    def _checked_result(self, ids: list[int], completion: Any, stops: tuple[str, ...], cached: Any) -> StepResult:
        """The result of a step the engine stopped by id (or at its limit): its text decoded once, without the
        stopping id (as vLLM's text), and cut where vLLM's stop strings would have cut it should one of them be
        spelled from ordinary tokens (a session's KV then runs past the cut, so its next step starts a new one)."""
        finish = str(completion.finish_reason)
        by_id = finish == "stop" and not isinstance(completion.stop_reason, str)  # EOS or a stop token's id
        text_ids = ids[:-1] if by_id and ids else ids
        decode = self._tokenizer.decode
        stopped = text_stop(text_ids, stops, decode)
        if stopped is None:
            return StepResult(tuple(ids), decode(text_ids), finish, int(cached or 0))
        end, text = stopped
        return StepResult(tuple(text_ids[:end]), text, "stop", int(cached or 0))


__all__ = ["VLLMStepEngine", "special_token_ids", "supports_sessions", "text_stop"]
