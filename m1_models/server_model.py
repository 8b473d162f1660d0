"""``m1-server``: budget forcing over the OpenAI-compatible ``/v1/completions`` endpoint of running servers.

Any server that speaks the OpenAI completions API works (``vllm serve``, SGLang, TGI's OpenAI layer, ...); one
server or a fleet (``base_url=http://a:8000|http://b:8000``).  Every phase of a request (thinking, each "Wait"
round, the answer) is one completion call whose prompt is the request's token ids so far, so the token budget is
counted with the local tokenizer exactly as ``m1-vllm`` counts it; with vLLM the generated ids come back
(``return_token_ids``), elsewhere the returned text is re-tokenized locally (see the README: "m1-server").

Requests advance independently (the ``continuous`` schedule over the network), at most ``max_concurrency`` calls
per server at a time.  All phases of one request go to the server that took its first phase (its prefix cache
holds the request's KV blocks); new requests go to the server with the least outstanding work.  Transient
failures (connection refused or reset, timeouts, 429, 5xx) are retried with exponential backoff and jitter; a
server that still fails after ``max_retries`` retries leaves the fleet and its requests move to the others; when
none is left the run stops with one line (:class:`~m1_eval.errors.ServerError`).  lm-eval's ``--use_cache``
database holds every request that finished, so the same command resumes.

The API key is read from the environment variable NAMED by ``api_key_env`` and only ever put in the
``Authorization`` header: never logged, never in an error message, never in lm-eval's model_args.

One module of ~500 lines on purpose: the fleet (routing, retries, failover), the HTTP calls and the lm-eval
model class are one backend, and the backend contract asks for one module per backend; the fleet's state is
shared by every call, so splitting it from the calls would spread one mechanism over two files.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import random
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m1_eval.errors import ModelArgsError, ServerError
from m1_models.backend import Backend, HFTokenizer
from m1_models.budget_forcing import GenerationStep, StepResult
from m1_models.lm_eval_model import M1LM, check_schedule

logger = logging.getLogger(__name__)

#: gen_kwargs m1-server passes to the server (the OpenAI completions parameters plus vLLM's/SGLang's extras)
SAMPLING_KEYS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
        "ignore_eos",
        "stop_token_ids",
        "bad_words",
        "allowed_token_ids",
    }
)
TOKEN_ID_MODES = ("auto", "text")
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def split_base_urls(base_url: str) -> list[str]:
    """``http://a:8000|http://b:8000/v1`` -> the servers' ``.../v1`` roots (model_args already use commas)."""
    urls = []
    for part in str(base_url).split("|"):
        url = part.strip().rstrip("/")
        if not url:
            continue
        if not url.startswith(("http://", "https://")):
            raise ModelArgsError(
                f"model_arg base_url has {url!r}, which is not an http(s) address; pass e.g. "
                f"base_url=http://127.0.0.1:8000 (several servers separated by |)"
            )
        urls.append(url if url.endswith("/v1") else url + "/v1")
    if not urls:
        raise ModelArgsError("m1-server needs model_arg base_url=http://HOST:PORT (several separated by |)")
    if len(set(urls)) != len(urls):
        raise ModelArgsError(f"model_arg base_url names a server twice ({base_url}); list each server once")
    return urls


@dataclass
class Server:
    """One server of the fleet, as the engine sees it."""

    url: str
    alive: bool = True
    outstanding: int = 0  # tokens asked for by the steps queued or in flight here (the "work" for balancing)
    steps_sent: int = 0  # steps that finished here (tests and the log read it)
    limit: asyncio.Semaphore | None = None


@dataclass
class _Flight:
    key: int
    request_id: str
    step: GenerationStep
    server: Server
    future: Future | None = None
    epoch: int = 0


@dataclass
class ServerSettings:
    model: str
    max_concurrency: int = 64
    timeout: float = 3600.0
    max_retries: int = 8
    backoff: float = 0.5  # first retry after ~backoff s, doubling (jitter 0.5x-1.5x), at most backoff_cap
    backoff_cap: float = 10.0
    token_ids: str = "auto"
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # holds the key: never printed


class ServerStepEngine:
    """:class:`~m1_models.scheduling.StepEngine` over OpenAI-compatible servers, on an asyncio loop in a thread.

    ``submit`` hands a step to the loop and returns at once; ``poll`` waits for finished steps (or the error that
    ends the run).  Request ids ``m1-<n>`` come from one counter for the life of the engine.
    """

    def __init__(self, urls: Sequence[str], settings: ServerSettings, tokenizer: HFTokenizer) -> None:
        import httpx

        self.servers = [Server(url) for url in urls]
        self.settings = settings
        self._tokenizer = tokenizer
        self._ids = itertools.count()
        self._results: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._flights: dict[int, _Flight] = {}  # key -> the step in flight
        self._sticky: dict[int, tuple[Server, tuple[int, ...]]] = {}  # key -> its server and last prompt
        self._epoch = 0  # abort() moves it on: results of older epochs are dropped
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="m1-server-loop", daemon=True)
        self._thread.start()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.max_concurrency * len(urls))
        timeout = httpx.Timeout(settings.timeout, connect=min(10.0, settings.timeout))

        async def setup() -> Any:
            for server in self.servers:
                server.limit = asyncio.Semaphore(settings.max_concurrency)
            return httpx.AsyncClient(limits=limits, timeout=timeout, headers=settings.headers)

        self._client = asyncio.run_coroutine_threadsafe(setup(), self._loop).result()
        if logging.getLogger("httpx").level == logging.NOTSET:  # one INFO line per completion call otherwise
            logging.getLogger("httpx").setLevel(logging.WARNING)

    # -- StepEngine ------------------------------------------------------------------------------------------
    def submit(self, key: int, step: GenerationStep) -> None:
        with self._lock:
            server = self._route(key, step)
            server.outstanding += step.max_tokens
            flight = _Flight(key, f"m1-{next(self._ids)}", step, server, epoch=self._epoch)
            self._flights[key] = flight
        flight.future = asyncio.run_coroutine_threadsafe(self._fly(flight), self._loop)

    def poll(self) -> list[tuple[int, StepResult]]:
        if not self._flights:
            return []
        done: list[tuple[int, StepResult]] = []
        item = self._results.get()
        while True:
            epoch, payload = item
            if epoch == self._epoch:
                if isinstance(payload, BaseException):
                    raise payload
                key, result = payload
                self._flights.pop(key, None)
                done.append((key, result))
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return done

    def abort(self) -> None:
        with self._lock:
            self._epoch += 1
            flights, self._flights = list(self._flights.values()), {}
            for flight in flights:
                flight.server.outstanding -= flight.step.max_tokens
        for flight in flights:
            if flight.future is not None:
                self._loop.call_soon_threadsafe(flight.future.cancel)

    def close(self) -> None:
        self.abort()
        if not self._loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing is best effort
            logger.debug("m1-server: closing the HTTP client failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # -- routing -----------------------------------------------------------------------------------------------
    def _route(self, key: int, step: GenerationStep) -> Server:
        """The server of ``key``'s earlier phases (a continuation extends its last prompt), else the live server
        with the least outstanding work."""
        previous = self._sticky.get(key)
        if previous is not None:
            server, prompt = previous
            if server.alive and step.prompt_ids[: len(prompt)] == prompt:
                self._sticky[key] = (server, step.prompt_ids)
                return server
        server = self._least_loaded()
        self._sticky[key] = (server, step.prompt_ids)
        return server

    def _least_loaded(self) -> Server:
        live = [server for server in self.servers if server.alive]
        if not live:  # only reached when a step is submitted after the last server left
            raise ServerError("m1-server: no server of the fleet is left; start the servers and rerun with --use_cache")
        return min(live, key=lambda server: server.outstanding)

    # -- one step, on the loop ---------------------------------------------------------------------------------
    async def _fly(self, flight: _Flight) -> None:
        try:
            result = await self._complete(flight)
        except asyncio.CancelledError:
            return
        except BaseException as error:  # noqa: BLE001 - handed to poll(), which raises it in the caller's thread
            self._results.put((flight.epoch, error))
            return
        with self._lock:
            flight.server.outstanding -= flight.step.max_tokens
            flight.server.steps_sent += 1
        self._results.put((flight.epoch, (flight.key, result)))

    async def _complete(self, flight: _Flight) -> StepResult:
        body = self._body(flight.step)
        while True:
            server = flight.server
            error = await self._try_server(server, body, flight)
            if isinstance(error, StepResult):
                return error
            with self._lock:  # the server stayed down: out of the fleet, the step goes elsewhere
                if server.alive:
                    server.alive = False
                    logger.warning(
                        "m1-server: %s leaves the fleet after %d retries (%s); its requests move to the others",
                        server.url,
                        self.settings.max_retries,
                        error,
                    )
                server.outstanding -= flight.step.max_tokens
                live = [s for s in self.servers if s.alive]
                if not live:
                    raise ServerError(
                        f"m1-server: no server left: {server.url} failed request {flight.request_id} "
                        f"({flight.step.phase.value} phase) after {self.settings.max_retries} retries: {error}; "
                        f"start the server(s) and rerun the same command with --use_cache to resume"
                    )
                target = min(live, key=lambda s: s.outstanding)
                target.outstanding += flight.step.max_tokens
                flight.server = target
                self._sticky[flight.key] = (target, flight.step.prompt_ids)

    async def _try_server(self, server: Server, body: dict[str, Any], flight: _Flight) -> StepResult | str:
        """The step's result from ``server``, or (after ``max_retries`` transient failures) the last error."""
        import httpx

        last = ""
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                delay = min(self.settings.backoff_cap, self.settings.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random()))
            if not server.alive:
                return last or "left the fleet"
            assert server.limit is not None
            async with server.limit:
                if flight.epoch != self._epoch:  # aborted before it was sent (abort's cancel is on its way)
                    raise asyncio.CancelledError
                try:
                    response = await self._client.post(server.url + "/completions", json=body)
                except (httpx.TransportError, httpx.TimeoutException) as error:
                    last = f"{type(error).__name__}: {error}".strip().rstrip(":") or type(error).__name__
                    logger.info("m1-server: %s, request %s: %s (retrying)", server.url, flight.request_id, last)
                    continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {_short(response.text)}"
                logger.info("m1-server: %s, request %s: %s (retrying)", server.url, flight.request_id, last)
                continue
            if response.status_code != 200:
                raise ServerError(
                    f"m1-server: {server.url} rejected request {flight.request_id} with HTTP "
                    f"{response.status_code}: {_short(response.text)}; check model=, the gen_kwargs and the "
                    f"server's log"
                )
            result = self._result(response.json(), flight.step)
            if result is None:  # the server aborted it (e.g. shutting down): a transient failure
                last = "the server aborted the request"
                continue
            return result
        return last

    def _body(self, step: GenerationStep) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "max_tokens": step.max_tokens,
            "stream": False,
            "skip_special_tokens": False,  # special-token stop strings only match on text that shows them
            "spaces_between_special_tokens": False,
        }
        body.update(step.sampling)
        if step.stop:
            body["stop"] = list(step.stop)
        if step.min_tokens > 0:
            body["min_tokens"] = min(step.min_tokens, step.max_tokens)
        if step.stop_token_ids:
            body["stop_token_ids"] = [*(body.get("stop_token_ids") or ()), *step.stop_token_ids]
        if self.settings.token_ids == "text":
            body["prompt"] = self._tokenizer.decode(step.prompt_ids)
        else:
            body["prompt"] = list(step.prompt_ids)
            body["return_token_ids"] = True
        return body

    def _result(self, data: dict[str, Any], step: GenerationStep) -> StepResult | None:
        choice = (data.get("choices") or [{}])[0]
        finish = str(choice.get("finish_reason") or "stop")
        if finish in ("abort", "error"):
            return None
        text = str(choice.get("text") or "")
        ids = choice.get("token_ids")
        if ids is None:  # a server that does not return ids: the local tokenizer's ids of the text, capped
            ids = self._tokenizer.encode(text)[: step.max_tokens]
        details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
        return StepResult(
            token_ids=tuple(int(i) for i in ids),
            text=text,
            finish_reason=finish,
            cached_tokens=int(details.get("cached_tokens") or 0),
        )


def _short(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _fetch_models(url: str, headers: dict[str, str], timeout: float) -> list[dict[str, Any]] | str:
    """The server's ``/v1/models`` cards, or why they could not be read."""
    import httpx

    try:
        response = httpx.get(url + "/models", headers=headers, timeout=min(timeout, 10.0))
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {_short(response.text, 200)}"
    return list(response.json().get("data") or [])


class M1Server(M1LM):
    """lm-eval model ``m1-server``: see the module docstring and the README's "m1-server"."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        model: str | None = None,
        tokenizer: str | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 64,
        timeout: float = 3600.0,
        max_retries: int = 8,
        max_model_len: int | None = None,
        token_ids: str = "auto",
        seed: int = 1234,
        schedule: str = "continuous",
        add_bos_token: bool = False,
        trust_remote_code: bool = False,
        batch_size: Any = None,  # lm-eval's; concurrency is max_concurrency
        max_batch_size: Any = None,
        device: Any = None,
        **unknown: Any,
    ) -> None:
        check_schedule(schedule)
        if unknown:
            name = sorted(unknown)[0]
            if name == "api_key":
                raise ModelArgsError(
                    "m1-server does not take the key itself (model_args end up in logs and results files); put it in "
                    "an environment variable and pass its name: api_key_env=MY_KEY_VARIABLE"
                )
            raise ModelArgsError(
                f"model_arg {name!r} is not an m1-server argument; use base_url, model, tokenizer, api_key_env, "
                f"max_concurrency, timeout, max_retries, max_model_len, token_ids (see the README's m1-server)"
            )
        if not base_url:
            raise ModelArgsError("m1-server needs model_arg base_url=http://HOST:PORT (several separated by |)")
        urls = split_base_urls(str(base_url))
        if token_ids not in TOKEN_ID_MODES:
            raise ModelArgsError(f"model_arg token_ids={token_ids!r} is unknown; use one of {', '.join(TOKEN_ID_MODES)}")
        numbers = {"max_concurrency": max_concurrency, "timeout": timeout, "max_retries": max_retries}
        for name, value in numbers.items():
            try:
                ok = float(value) >= (0 if name == "max_retries" else 1e-9)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ModelArgsError(f"model_arg {name}={value!r} must be a positive number")
        headers: dict[str, str] = {}
        if api_key_env:
            if str(api_key_env).startswith(("sk-", "Bearer")) or len(str(api_key_env)) > 64:
                raise ModelArgsError(
                    "model_arg api_key_env takes the NAME of an environment variable holding the key, not the key; "
                    "export MY_KEY=... and pass api_key_env=MY_KEY"
                )
            key = os.environ.get(str(api_key_env))
            if not key:
                raise ModelArgsError(
                    f"model_arg api_key_env={api_key_env} names an environment variable that is not set; export "
                    f"{api_key_env}=<the server's key> or drop api_key_env"
                )
            headers["Authorization"] = f"Bearer {key}"
        cards: dict[str, list[dict[str, Any]]] = {}
        for url in urls:
            answer = _fetch_models(url, headers, float(timeout))
            if isinstance(answer, str):
                logger.warning("m1-server: %s does not answer /v1/models (%s)", url, answer)
            else:
                cards[url] = answer
        if not cards and not (model and tokenizer and max_model_len):
            raise ModelArgsError(
                f"m1-server: no server answers at {base_url}; start it (e.g. vllm serve MODEL --port 8000) or check "
                f"base_url (to start without a server, pass model=, tokenizer= and max_model_len=)"
            )
        served = [card.get("id") for answer in cards.values() for card in answer]
        if model is None:
            if not served:
                raise ModelArgsError(f"m1-server: the server at {base_url} lists no model; pass model=<name>")
            model = str(served[0])
        elif cards and model not in served:
            raise ModelArgsError(
                f"m1-server: model={model} is not served at {base_url} (it serves {', '.join(map(str, served))}); "
                f"pass one of those as model="
            )
        if max_model_len is None:
            lengths = [
                int(card["max_model_len"])
                for answer in cards.values()
                for card in answer
                if card.get("id") == model and card.get("max_model_len")
            ]
            if not lengths:
                raise ModelArgsError(
                    f"m1-server: the server does not say the context window of {model}; pass max_model_len=<the "
                    f"server's context window>"
                )
            max_model_len = min(lengths)
        tokenizer_source = tokenizer or model
        hf_tokenizer = _load_tokenizer(str(tokenizer_source), trust_remote_code in (True, "True", "true", "1", 1))
        settings = ServerSettings(
            model=str(model),
            max_concurrency=int(max_concurrency),
            timeout=float(timeout),
            max_retries=int(max_retries),
            token_ids=token_ids,
            headers=headers,
        )
        self.urls = urls
        self._server_settings = settings
        backend = Backend(
            model_name=str(model),
            tokenizer=hf_tokenizer,
            max_model_len=int(max_model_len),
            sampling_keys=SAMPLING_KEYS,
            start_engine=lambda: ServerStepEngine(urls, settings, hf_tokenizer),
        )
        super().__init__(backend, seed=seed, schedule=schedule, add_bos_token=add_bos_token)
        logger.info(
            "m1-server: %s at %s (max_model_len=%d, max_concurrency=%d per server)",
            model,
            " | ".join(urls),
            int(max_model_len),
            int(max_concurrency),
        )

    def check_sampling(self, sampling: dict[str, Any]) -> None:
        """The ranges vLLM and SGLang enforce for the common parameters (m1-hf's parser: vLLM's names and
        ranges), checked before the first call instead of as an HTTP 400 in the middle of a run."""
        from m1_models.hf_model import SAMPLING_KEYS as COMMON_KEYS
        from m1_models.hf_model import Sampling

        Sampling.from_dict({key: value for key, value in sampling.items() if key in COMMON_KEYS})


def _load_tokenizer(source: str, trust_remote_code: bool) -> HFTokenizer:
    from transformers import AutoTokenizer

    path = Path(source).expanduser()
    try:
        return HFTokenizer(
            AutoTokenizer.from_pretrained(str(path) if path.exists() else source, trust_remote_code=trust_remote_code)
        )
    except (OSError, ValueError) as error:
        raise ModelArgsError(
            f"m1-server cannot load the tokenizer {source!r} ({_short(str(error), 200)}); pass tokenizer=<local folder "
            f"or Hugging Face id of the served model's tokenizer>"
        ) from None


__all__ = ["M1Server", "ServerStepEngine", "split_base_urls"]
