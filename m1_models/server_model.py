"""``m1-server``: budget forcing over the OpenAI-compatible ``/v1/completions`` endpoint of running servers.

Any server that speaks the OpenAI completions API works (``vllm serve``, SGLang, TGI's OpenAI layer, ...); one
server or a fleet (``base_url=http://a:8000|http://b:8000``).  Every phase of a request (thinking, each "Wait"
round, the answer) is one completion call whose prompt is the request's token ids so far, so the token budget is
counted with the local tokenizer exactly as ``m1-vllm`` counts it; with vLLM the generated ids come back
(``return_token_ids``), elsewhere the returned text is re-tokenized locally (see docs/models.md, "m1-server").

Requests advance independently (the ``continuous`` schedule over the network), at most ``max_concurrency`` calls
per server at a time.  All phases of one request go to the server that took its first phase (its prefix cache
holds the request's KV blocks); new requests go to the server with the least outstanding work.  Transient
failures (connection refused or reset, timeouts, 429, 5xx) are retried with exponential backoff and jitter; a
server that still fails after ``max_retries`` retries leaves the fleet and its requests move to the others; when
none is left the run stops with one line (:class:`~m1_base.errors.ServerError`).  lm-eval's ``--use_cache``
database holds every request that finished, so the same command resumes.

Secrets: the API key is read from the environment variable NAMED by ``api_key_env`` and only ever put in the
``Authorization`` header: never logged, never in an error message, never in lm-eval's model_args; a value of
``api_key_env`` that is not usable is reported without being shown (it may be a pasted key:
:func:`looks_like_key`).  A ``user:password@`` in a ``base_url`` is taken out of the address and sent as HTTP
Basic auth; every message and log line shows the address masked (``http://user:***@host``, :func:`mask_url`;
the records name the server that answered each step, masked).  lm-eval itself logs the model_args, prints
them and writes them into its results file: :func:`guard_lm_eval_model_args`, :func:`mask_log_record` and
:func:`mask_lm_eval_results`, which the start-up hook (:mod:`m1_eval.lm_eval_hook`) applies to
``lm_eval.evaluator``, mask them there.

One module on purpose: the fleet (routing, retries, failover), the HTTP calls, the lm-eval model class and the
rules for its secrets are one backend, and the backend contract asks for one module per backend; the fleet's state
is shared by every call, so splitting it from the calls would spread one mechanism over two files.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from m1_base import values
from m1_base.errors import ModelArgsError, ServerError
from m1_models.backend import Backend, HFTokenizer
from m1_models.engine_types import GenerationStep, StepResult
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
#: the least a streamed call may go without a token before its server is probed (seconds): a loaded server can
#: queue a call for a while, a prefill of a long prompt takes seconds; the default stall limit is the larger of this
#: and 20 times the longest gap between tokens the fleet has shown
STALL_FLOOR = 60.0
STALL_GAP_FACTOR = 20.0
#: probing a server that left the fleet: first after this many seconds, doubling up to REJOIN_CAP
REJOIN_FIRST, REJOIN_CAP = 1.0, 30.0
#: tail hedging: a call is late when it has run HEDGE_FACTOR x the fleet's p95 seconds per token for the tokens it
#: has streamed (+1), and at least HEDGE_FLOOR seconds; the p95 is taken over the last HEDGE_WINDOW calls, once
#: HEDGE_MIN_CALLS have finished
HEDGE_FACTOR, HEDGE_FLOOR, HEDGE_WINDOW, HEDGE_MIN_CALLS = 3.0, 2.0, 512, 16


class _Stalled(Exception):
    """A streamed call made no progress for the stall limit and its server did not answer its health probe."""


class _Abandoned(Exception):
    """The call's server left the fleet (another call found it down): the step moves at once."""


class _BadStream(Exception):
    """The server's answer could not be read (truncated or malformed JSON, a stream that ended early)."""


#: how m1-server's model_args report a value (one line, the project's user error)
SOURCE = values.Source("model_arg", ModelArgsError)


# -- secrets: a key pasted where its variable's name belongs, credentials in a URL -------------------------------
#: a variable name as shells take it
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: how common keys and tokens begin (Hugging Face, OpenAI-style, GitHub, GitLab, Slack), and the header's scheme
KEY_PREFIXES = ("hf_", "sk-", "sk_", "Bearer", "bearer", "ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-", "xox")
#: longer than a variable name one types; most keys are longer (OpenAI's 51 and more, a 40-character hex token)
LONGEST_KEY_NAME = 40
#: shown instead of a secret
MASK = "***"


def looks_like_key(value: Any) -> bool:
    """Whether a value of ``api_key_env`` looks like a key rather than the name of the variable holding one.

    The judgement (documented in docs/errors.md): it is not a text, or not a variable name
    (``[A-Za-z_][A-Za-z0-9_]*``: keys carry ``-``, ``.``, ``/``, ``+``, ``=`` or ``Bearer ``), or longer than
    :data:`LONGEST_KEY_NAME` characters, or starts like a known key (:data:`KEY_PREFIXES`), or mixes lower-case
    letters with digits as tokens do (``a9f3...``, ``hf_AbC123``; variable names are upper case by convention).
    Either way m1-server never shows the value; this only picks the message.
    """
    if not isinstance(value, str):
        return True
    return (
        not _ENV_NAME.fullmatch(value)
        or len(value) > LONGEST_KEY_NAME
        or value.startswith(KEY_PREFIXES)
        or (any(c.islower() for c in value) and any(c.isdigit() for c in value))
    )


def read_api_key(api_key_env: Any) -> str | None:
    """The key in the environment variable NAMED by model_arg ``api_key_env`` (None when it is not given).

    Anything else is one line that does not show the value (it may be the key itself): the value is not a variable
    name, looks like a key (:func:`looks_like_key`), or names a variable that is not set or empty.
    """
    if values.is_not_set(api_key_env):
        return None
    if isinstance(api_key_env, str) and _ENV_NAME.fullmatch(api_key_env) and os.environ.get(api_key_env):
        return os.environ[api_key_env]
    if looks_like_key(api_key_env):
        raise ModelArgsError(
            "model_arg api_key_env takes the NAME of an environment variable, and its value looks like a key "
            "(value not shown); export MY_KEY=<the key> and pass api_key_env=MY_KEY"
        )
    raise ModelArgsError(
        "model_arg api_key_env names no environment variable that is set (value not shown: it may be a key); "
        "export MY_KEY=<the server's key> and pass api_key_env=MY_KEY, or drop api_key_env"
    )


def shows_key_name(api_key_env: Any) -> bool:
    """Whether a value of ``api_key_env`` may be shown: a variable name that is set and does not look like a key."""
    return isinstance(api_key_env, str) and not looks_like_key(api_key_env) and bool(os.environ.get(api_key_env))


def mask_url(url: str) -> str:
    """``url`` as m1-server shows it: ``user:password@`` becomes ``user:***@``, a user part alone (often a token)
    ``***@``, a query or fragment ``?***``.  Everything before the last ``@`` counts as the user part, so an
    address whose password holds an unencoded ``/``, ``?`` or ``#`` never shows a piece of it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, password = userinfo.partition(":")
        plain_user = colon and user and password and not set(user) & set("/?#")
        rest = f"{user}:{MASK}@{rest}" if plain_user else f"{MASK}@{rest}"
        cut = rest.index("@") + 1
    else:
        cut = 0
    marks = [i for i in (rest.find("?", cut), rest.find("#", cut)) if i >= 0]
    if marks:
        rest = rest[: min(marks)] + "?" + MASK
    return scheme + sep + rest


def mask_base_url(base_url: str) -> str:
    """A ``base_url`` (one address or several separated by ``|``) with every address masked (:func:`mask_url`)."""
    return "|".join(mask_url(part) for part in str(base_url).split("|"))


def mask_model_arg(key: str, value: Any) -> Any:
    """How a model_arg may be shown in a log or a results file: ``api_key`` never, ``api_key_env`` only when it
    names a variable that is set (:func:`shows_key_name`), an address with its credentials masked."""
    if isinstance(value, MaskedText):
        return value.shown
    if key == "api_key":
        return value if value is None else MASK
    if key == "api_key_env":
        return value if values.is_not_set(value) or shows_key_name(value) else MASK
    if isinstance(value, str) and "://" in value:
        return mask_base_url(value)
    return value


def mask_model_args(model_args: Any) -> Any:
    """``model_args`` (lm-eval's dict, or a ``key=value,...`` string) as :func:`mask_model_arg` shows them."""
    if isinstance(model_args, dict):
        return {key: mask_model_arg(str(key), value) for key, value in model_args.items()}
    if isinstance(model_args, str) and not model_args.lstrip().startswith("{"):
        items = []
        for item in model_args.split(","):
            key, sep, value = item.partition("=")
            items.append(f"{key}{sep}{mask_model_arg(key.strip(), value)}" if sep else item)
        return ",".join(items)
    return model_args


class MaskedText(str):
    """A model_arg's text, unchanged, whose ``repr`` (how a model_args dict is printed) is its masked form."""

    shown: str

    def __new__(cls, text: str, shown: str) -> MaskedText:
        self = super().__new__(cls, text)
        self.shown = shown
        return self

    def __repr__(self) -> str:
        return repr(self.shown)

    def __getnewargs__(self) -> tuple[str, str]:  # copy and pickle keep the masked form
        return (str(self), self.shown)


#: (text as lm-eval's log shows it, its masked form), from the model_args :func:`guard_lm_eval_model_args` saw
_LOG_MASKS: dict[str, str] = {}


def guard_lm_eval_model_args(model_args: Any) -> None:
    """Before lm-eval's ``simple_evaluate`` logs the model_args and builds the model (called by the start-up hook).

    lm-eval logs the model_args at INFO and prints them after the run: each value that carries a credential
    becomes a :class:`MaskedText` in the dict (same text for the model, masked ``repr``), and the log line is
    masked by :func:`mask_log_record` (also for a ``key=value,...`` string, which lm-eval parses into a new dict).
    """
    items = model_args.items() if isinstance(model_args, dict) else []
    if isinstance(model_args, str) and not model_args.lstrip().startswith("{"):
        items = [tuple(item.partition("=")[::2]) for item in model_args.split(",") if "=" in item]
    changed = []
    for key, value in list(items):
        shown = mask_model_arg(str(key).strip(), value)
        if shown is value or shown == value:
            continue
        changed.append((key, value, shown))
        _LOG_MASKS[repr(value)] = repr(shown)
        if isinstance(value, str) and len(value) >= 6:  # short texts are only replaced where quoted
            _LOG_MASKS[value] = str(shown)
    if isinstance(model_args, dict):
        for key, value, shown in changed:
            if isinstance(value, str) and not isinstance(value, MaskedText):
                model_args[key] = MaskedText(value, str(shown))


def mask_log_record(record: logging.LogRecord) -> None:
    """A record of ``lm_eval.evaluator`` with the credentials :func:`guard_lm_eval_model_args` saw masked."""
    if not _LOG_MASKS:
        return
    message = record.getMessage()
    masked = message
    for text in sorted(_LOG_MASKS, key=len, reverse=True):
        masked = masked.replace(text, _LOG_MASKS[text])
    if masked != message:
        record.msg, record.args = masked, None


def mask_lm_eval_results(results: Any) -> Any:
    """lm-eval's results with the model_args masked where its results file writes them: ``config.model_args``
    and every task's and group's ``metadata`` (lm-eval merges the model_args into it)."""
    if not isinstance(results, dict):
        return results
    config = results.get("config")
    if isinstance(config, dict) and "model_args" in config:
        results["config"] = {**config, "model_args": mask_model_args(config["model_args"])}
    for name in ("configs", "group_configs"):
        configs = results.get(name)
        if isinstance(configs, dict):
            results[name] = {
                task: (
                    {**task_config, "metadata": mask_model_args(task_config["metadata"])}
                    if isinstance(task_config, dict) and isinstance(task_config.get("metadata"), dict)
                    else task_config
                )
                for task, task_config in configs.items()
            }
    return results


def _scrub(text: str, secrets: Sequence[str]) -> str:
    """A server's or a library's message with any secret m1-server sends replaced (a server may echo a header)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


@dataclass(frozen=True)
class ServerAddress:
    """One server of ``base_url``: where requests go (no credentials), how messages show it, its Basic auth."""

    url: str
    label: str
    credentials: tuple[str, str] | None = field(default=None, repr=False)


def parse_server_url(text: str) -> ServerAddress:
    """``http://HOST:PORT`` (with or without ``/v1``, optionally ``user:password@``) -> its ``.../v1`` root; the
    credentials leave the address and go in HTTP Basic auth (what httpx and curl make of them)."""
    raw = text.strip().rstrip("/")
    shown = mask_url(raw)
    if not raw.lower().startswith(("http://", "https://")):
        raise ModelArgsError(
            f"model_arg base_url has {shown!r}, which is not an http(s) address; pass e.g. "
            f"base_url=http://127.0.0.1:8000 (several servers separated by |)"
        )
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number
    except ValueError:
        parts = None
    if parts is None or not parts.hostname:
        raise ModelArgsError(
            f"model_arg base_url has {shown!r}, which is not a valid address; pass http://HOST:PORT (in a "
            f"user:password@, percent-encode / ? # @ as %2F %3F %23 %40)"
        )
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise ModelArgsError(
            f"model_arg base_url has {shown!r}: a server's address takes no query or fragment (not shown); pass "
            f"http://HOST:PORT, and a key as api_key_env=MY_KEY"
        )
    userinfo, at, netloc = parts.netloc.rpartition("@")
    path = parts.path.rstrip("/")
    url = f"{parts.scheme}://{netloc}{path}"
    url = url if url.endswith("/v1") else url + "/v1"
    if not at:
        return ServerAddress(url, url)
    credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    return ServerAddress(url, mask_url(f"{parts.scheme}://{userinfo}@{url.partition('://')[2]}"), credentials)


def parse_base_url(base_url: str) -> list[ServerAddress]:
    """``http://a:8000|http://user:pw@b:8000/v1`` -> the servers (model_args already use commas)."""
    addresses = [parse_server_url(part) for part in str(base_url).split("|") if part.strip().rstrip("/")]
    if not addresses:
        raise ModelArgsError("m1-server needs model_arg base_url=http://HOST:PORT (several separated by |)")
    urls = [address.url for address in addresses]
    if len(set(urls)) != len(urls):
        raise ModelArgsError(
            f"model_arg base_url names a server twice ({mask_base_url(base_url)}); list each server once"
        )
    return addresses


def split_base_urls(base_url: str) -> list[str]:
    """``http://a:8000|http://b:8000/v1`` -> the servers' ``.../v1`` roots, without credentials."""
    return [address.url for address in parse_base_url(base_url)]


@dataclass
class Server:
    """One server of the fleet, as the engine sees it: ``url`` has no credentials, ``label`` shows them masked."""

    url: str
    alive: bool = True
    outstanding: int = 0  # tokens asked for by the steps queued or in flight here (the "work" for balancing)
    steps_sent: int = 0  # steps that finished here (tests and the log read it)
    limit: asyncio.Semaphore | None = None
    label: str = ""
    auth: Any = field(default=None, repr=False)  # httpx.BasicAuth from the address's user:password@
    prober: Any = field(default=None, repr=False)  # the task probing a server that left, until it answers

    def __post_init__(self) -> None:
        self.label = self.label or self.url

    @property
    def health_url(self) -> str:
        """vLLM's, SGLang's and TGI's ``/health`` sits beside ``/v1``."""
        return self.url.removesuffix("/v1") + "/health"


@dataclass
class _Flight:
    key: int
    request_id: str
    step: GenerationStep
    server: Server
    future: Future | None = None
    epoch: int = 0
    started: float = 0.0  # when the call to ``server`` started (monotonic seconds)
    streamed: dict[str, int] = field(default_factory=dict)  # server url -> tokens its call has streamed so far
    answered_by: Server | None = None  # the server whose answer won (a hedged call has two)


@dataclass
class ServerSettings:
    model: str
    max_concurrency: int = 64
    timeout: float = 3600.0
    max_retries: int = 8
    backoff: float = 0.5  # first retry after ~backoff s, doubling (jitter 0.5x-1.5x), at most backoff_cap
    backoff_cap: float = 10.0
    token_ids: str = "auto"
    #: seconds a streamed call may go without a token before its server is probed (None: :data:`STALL_FLOOR`, or
    #: more when the fleet's calls have shown longer gaps: :meth:`ServerStepEngine.stall_limit`)
    stall_timeout: float | None = None
    hedge: bool = True  # a late call is also sent to an idle server, the first answer wins (tail hedging)
    probe_timeout: float = 5.0  # a server that does not answer /health within this is down (frozen, gone)
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # holds the key: never printed
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the key and passwords: scrubbed from messages


class ServerStepEngine:
    """:class:`~m1_models.scheduling.StepEngine` over OpenAI-compatible servers, on an asyncio loop in a thread.

    ``submit`` hands a step to the loop and returns at once; ``poll`` waits for finished steps (or the error that
    ends the run).  Request ids ``m1-<n>`` come from one counter for the life of the engine.
    """

    max_open_requests = 0  # a request holds nothing here between its steps (see engine_types.StepEngine)

    def __init__(
        self, addresses: Sequence[ServerAddress | str], settings: ServerSettings, tokenizer: HFTokenizer
    ) -> None:
        import httpx

        addresses = [parse_server_url(a) if isinstance(a, str) else a for a in addresses]
        self.servers = [
            Server(a.url, label=a.label, auth=httpx.BasicAuth(*a.credentials) if a.credentials else None)
            for a in addresses
        ]
        self.settings = settings
        self._tokenizer = tokenizer
        self._ids = itertools.count()
        self._results: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._flights: dict[int, _Flight] = {}  # key -> the step in flight
        self._sticky: dict[int, tuple[Server, tuple[int, ...]]] = {}  # key -> its server and last prompt
        self._epoch = 0  # abort() moves it on: results of older epochs are dropped
        self._longest_gap = 0.0  # the longest wait between two chunks of a call that went on (seconds)
        self._pace: collections.deque[float] = collections.deque(maxlen=HEDGE_WINDOW)  # seconds per token, by call
        self.hedges = 0  # calls also sent to an idle server (tests and the log read it)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="m1-server-loop", daemon=True)
        self._thread.start()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=settings.max_concurrency * len(addresses))
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
        for server in self.servers:
            if server.prober is not None:
                self._loop.call_soon_threadsafe(server.prober.cancel)
        try:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing is best effort
            logger.debug("m1-server: closing the HTTP client failed", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def colocate(self, key: int, with_key: int) -> None:
        """``key``'s first step goes to the server of ``with_key``, whose prefix it extends (its prefix cache),
        when that server is in the fleet."""
        with self._lock:
            leader = self._sticky.get(with_key)
            if leader is not None and key not in self._sticky:
                self._sticky[key] = (leader[0], ())

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
            (flight.answered_by or flight.server).steps_sent += 1
        self._results.put((flight.epoch, (flight.key, result)))

    async def _complete(self, flight: _Flight) -> StepResult:
        body = self._body(flight.step)
        while True:
            server = flight.server
            error = await self._hedged(server, body, flight)
            if isinstance(error, StepResult):
                return error
            with self._lock:  # the server stayed down: out of the fleet, the step goes elsewhere
                if server.alive:
                    server.alive = False
                    logger.warning(
                        "m1-server: %s leaves the fleet after %d retries (%s); its requests move to the others",
                        server.label,
                        self.settings.max_retries,
                        error,
                    )
                    server.prober = asyncio.ensure_future(self._probe_until_back(server))
                server.outstanding -= flight.step.max_tokens
                live = [s for s in self.servers if s.alive]
                if not live:
                    raise ServerError(
                        f"m1-server: no server left: {server.label} failed request {flight.request_id} "
                        f"({flight.step.phase.value} phase) after {self.settings.max_retries} retries: {error}; "
                        f"start the server(s) and rerun the same command with --use_cache to resume"
                    )
                target = min(live, key=lambda s: s.outstanding)
                target.outstanding += flight.step.max_tokens
                flight.server = target
                self._sticky[flight.key] = (target, flight.step.prompt_ids)

    async def _hedged(self, server: Server, body: dict[str, Any], flight: _Flight) -> StepResult | str:
        """:meth:`_try_server` on ``server``; when the call runs late (:meth:`_late`) while another live server is
        idle, the same call also goes there and the first answer wins, the other call is cancelled (tail hedging:
        greedy and seeded calls give the same tokens on every server of the fleet).  The answer names its server
        (``served_by``), and the request's next steps go to it."""
        flight.started = time.monotonic()
        flight.streamed = {}
        calls = {asyncio.ensure_future(self._try_server(server, body, flight)): server}
        failed: StepResult | str = ""
        try:
            while calls:
                done, _ = await asyncio.wait(set(calls), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    answered = calls.pop(task)
                    outcome = task.result()  # a ServerError (rejected call) ends the run
                    if isinstance(outcome, StepResult):
                        flight.answered_by = answered
                        if answered is not flight.server:
                            self._sticky[flight.key] = (answered, flight.step.prompt_ids)
                            asyncio.ensure_future(self._check_outrun(server))
                        elif len(calls) == 0:
                            self._pace.append((time.monotonic() - flight.started) / (len(outcome.token_ids) + 1))
                        return dataclasses.replace(outcome, served_by=answered.label)
                    if answered is flight.server:
                        failed = outcome  # the call's own server failed: a hedge still running may answer
                if len(calls) == 1 and not failed and self.settings.hedge and self._late(flight, server):
                    target = self._idle_server(server)
                    if target is not None:
                        self.hedges += 1
                        logger.info(
                            "m1-server: request %s on %s is late (%.0f s, %d tokens): also sent to %s",
                            flight.request_id,
                            server.label,
                            time.monotonic() - flight.started,
                            flight.streamed.get(server.url, 0),
                            target.label,
                        )
                        with self._lock:
                            target.outstanding += flight.step.max_tokens
                        hedge = asyncio.ensure_future(self._try_server(target, body, flight))
                        hedge.add_done_callback(lambda _, t=target: self._release(t, flight.step.max_tokens))
                        calls[hedge] = target
            return failed or "no answer"
        finally:
            for task in calls:
                task.cancel()

    async def _check_outrun(self, server: Server) -> None:
        """A hedge answered before ``server``: a server that does not answer its health probe either leaves the
        fleet (frozen, draining), as a stalled call would have found out later; a slow one stays."""
        if server.alive and not await self._healthy(server):
            await self._leave(server, "outrun by a hedged call and no answer to /health")

    def _release(self, server: Server, tokens: int) -> None:
        with self._lock:
            server.outstanding -= tokens

    def _late(self, flight: _Flight, server: Server) -> bool:
        """Whether the call has run :data:`HEDGE_FACTOR` x the fleet's p95 seconds per token for the tokens it
        streamed so far (+1), and at least :data:`HEDGE_FLOOR` seconds (never before the fleet has finished
        :data:`HEDGE_MIN_CALLS` calls: there is no "typical" yet)."""
        if len(self._pace) < HEDGE_MIN_CALLS:
            return False
        pace = sorted(self._pace)[int(0.95 * (len(self._pace) - 1))]
        elapsed = time.monotonic() - flight.started
        return elapsed > max(HEDGE_FLOOR, HEDGE_FACTOR * pace * (flight.streamed.get(server.url, 0) + 1))

    def _idle_server(self, busy: Server) -> Server | None:
        """A live server other than ``busy`` with nothing queued or in flight."""
        with self._lock:
            idle = [s for s in self.servers if s.alive and s is not busy and s.outstanding <= 0]
        return idle[0] if idle else None

    async def _try_server(self, server: Server, body: dict[str, Any], flight: _Flight) -> StepResult | str:
        """The step's result from ``server``, or (after ``max_retries`` transient failures, or at once when the
        server leaves the fleet) why not."""
        import httpx

        last = ""
        retry_after: float | None = None
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                delay = min(self.settings.backoff_cap, self.settings.backoff * 2 ** (attempt - 1))
                delay = retry_after if retry_after is not None else delay * (0.5 + random.random())
                await asyncio.sleep(delay)
            retry_after = None
            if not server.alive:
                return last or "left the fleet"
            assert server.limit is not None
            async with server.limit:
                if flight.epoch != self._epoch:  # aborted before it was sent (abort's cancel is on its way)
                    raise asyncio.CancelledError
                if not server.alive:  # it left while this call waited for a free slot
                    return f"{server.label} left the fleet"
                try:
                    outcome = await self._stream(server, body, flight)
                except (httpx.TransportError, httpx.TimeoutException, _BadStream) as error:
                    last = f"{type(error).__name__}: {error}".strip().rstrip(":") or type(error).__name__
                    last = _scrub(last.replace("_BadStream: ", ""), self.settings.secrets)
                    logger.info("m1-server: %s, request %s: %s (retrying)", server.label, flight.request_id, last)
                    continue
                except _Abandoned:
                    return f"{server.label} left the fleet"
                except _Stalled as stall:
                    last = str(stall)
                    if await self._leave(server, last):
                        return last
                    continue  # the last server standing: wait for it (each stall counts as a retry)
            if isinstance(outcome, StepResult):
                return outcome
            status, text, retry_after = outcome
            if status in RETRY_STATUS:
                last = f"HTTP {status}: {_scrub(_short(text), self.settings.secrets)}"
                logger.info("m1-server: %s, request %s: %s (retrying)", server.label, flight.request_id, last)
                continue
            fix = (
                "check the key (api_key_env) or the user:password in base_url"
                if status in (401, 403)
                else "check model=, the gen_kwargs and the server's log"
            )
            raise ServerError(
                f"m1-server: {server.label} rejected request {flight.request_id} with HTTP "
                f"{status}: {_scrub(_short(text), self.settings.secrets)}; {fix}"
            )
        return last

    def stall_limit(self) -> float:
        """Seconds a call may go without a token before its server is probed: ``stall_timeout``, else the larger
        of :data:`STALL_FLOOR` and :data:`STALL_GAP_FACTOR` times the longest gap the fleet has shown."""
        if self.settings.stall_timeout is not None:
            return self.settings.stall_timeout
        return max(STALL_FLOOR, STALL_GAP_FACTOR * self._longest_gap)

    async def _stream(
        self, server: Server, body: dict[str, Any], flight: _Flight
    ) -> StepResult | tuple[int, str, float | None]:
        """One streamed completion call: its result, or ``(status, text, Retry-After seconds)`` of an HTTP error.

        Raises :class:`_Stalled` when no token came for :meth:`stall_limit` seconds and the server does not
        answer its health probe (a server that answers is slow, not gone: the call goes on), :class:`_Abandoned`
        when the server left the fleet meanwhile, :class:`_BadStream` for an answer that cannot be read."""
        start = time.monotonic()
        request = self._client.build_request("POST", server.url + "/completions", json=body)
        response = await self._watched(self._client.send(request, auth=server.auth, stream=True), server, start)
        try:
            if response.status_code != 200:
                text = (await self._watched(response.aread(), server, start)).decode(errors="replace")
                return response.status_code, text, _retry_after(response.headers.get("retry-after"))
            lines = response.aiter_lines()
            chunks: list[dict[str, Any]] = []
            last_progress = time.monotonic()
            while True:
                try:
                    line = await self._watched(anext(lines), server, last_progress)
                except StopAsyncIteration:
                    break
                now = time.monotonic()
                if chunks:
                    self._longest_gap = max(self._longest_gap, now - last_progress)
                last_progress = now
                line = line.strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise _BadStream(f"unreadable answer ({_short(data, 80)})") from None
                if not isinstance(chunk, dict):
                    raise _BadStream(f"unreadable answer ({_short(data, 80)})")
                chunks.append(chunk)
                flight.streamed[server.url] = flight.streamed.get(server.url, 0) + sum(
                    len(choice.get("token_ids") or ()) or 1 for choice in chunk.get("choices") or ()
                )
        finally:
            await response.aclose()
        return self._joined(chunks, flight.step)

    async def _watched(self, awaitable: Any, server: Server, since: float) -> Any:
        """``await awaitable`` (sending the call and waiting for its headers, or the next line of its answer),
        watched each second: :class:`_Abandoned` when ``server`` left the fleet meanwhile; after
        :meth:`stall_limit` seconds without progress since ``since``, its health is probed: no answer is
        :class:`_Stalled`, an answer means slow, not gone (the wait goes on)."""
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=1.0)
                if done:
                    return task.result()
                if not server.alive:
                    raise _Abandoned
                waited = time.monotonic() - since
                if waited > self.stall_limit():
                    if not await self._healthy(server):
                        raise _Stalled(f"no progress for {waited:.0f} s and no answer to /health")
                    since = time.monotonic()
        finally:
            if not task.done():
                task.cancel()

    def _joined(self, chunks: list[dict[str, Any]], step: GenerationStep) -> StepResult:
        """The streamed chunks as the one answer a non-streamed call gives (text and ids concatenated)."""
        texts: list[str] = []
        ids: list[int] | None = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        for chunk in chunks:
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                texts.append(str(choice.get("text") or ""))
                if ids is not None:
                    if choice.get("token_ids") is None:
                        ids = None
                    else:
                        ids.extend(int(i) for i in choice["token_ids"])
                finish = choice.get("finish_reason") or finish
        if finish is None:
            raise _BadStream("the answer ended before its finish_reason")
        data = {"choices": [{"text": "".join(texts), "token_ids": ids, "finish_reason": finish}], "usage": usage}
        result = self._result(data, step)
        if result is None:  # the server aborted it (e.g. shutting down): a transient failure
            raise _BadStream("the server aborted the request")
        return result

    async def _healthy(self, server: Server) -> bool:
        """Whether ``server`` answers ``/health`` (or, where there is none, ``/v1/models``) within the probe
        timeout."""
        import httpx

        for url in (server.health_url, server.url + "/models"):
            try:
                response = await self._client.get(url, auth=server.auth, timeout=self.settings.probe_timeout)
            except (httpx.TransportError, httpx.TimeoutException):
                return False
            if response.status_code != 404:
                return response.status_code < 400
        return False

    async def _leave(self, server: Server, why: str) -> bool:
        """``server`` stalled and does not answer: it leaves the fleet (its calls move at once: they see it gone
        within a second) and is probed until it answers again.  The last live server stays (False)."""
        with self._lock:
            if not server.alive:
                return True
            if not any(s.alive for s in self.servers if s is not server):
                logger.warning("m1-server: %s does not answer (%s); no other server: waiting for it", server.label, why)
                return False
            server.alive = False
        logger.warning("m1-server: %s leaves the fleet (%s); its requests move to the others", server.label, why)
        server.prober = asyncio.ensure_future(self._probe_until_back(server))
        return True

    async def _probe_until_back(self, server: Server) -> None:
        delay = REJOIN_FIRST
        while not server.alive:
            await asyncio.sleep(delay)
            delay = min(REJOIN_CAP, delay * 2)
            if await self._healthy(server):
                with self._lock:
                    server.alive = True
                logger.warning("m1-server: %s answers again and rejoins the fleet", server.label)

    def _body(self, step: GenerationStep) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "max_tokens": step.max_tokens,
            "stream": True,  # tokens arrive as they are made: a call that makes no progress is seen (stall_limit)
            "stream_options": {"include_usage": True},
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


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (capped at 60), None when absent or a date."""
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def _short(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _fetch_models(
    address: ServerAddress, headers: dict[str, str], timeout: float, secrets: Sequence[str]
) -> list[dict[str, Any]] | str:
    """The server's ``/v1/models`` cards, or why they could not be read; a server that refuses the credentials
    (HTTP 401 or 403) ends the run here, before any request."""
    import httpx

    auth = httpx.BasicAuth(*address.credentials) if address.credentials else None
    try:
        response = httpx.get(address.url + "/models", headers=headers, auth=auth, timeout=min(timeout, 10.0))
    except httpx.HTTPError as error:
        return _scrub(f"{type(error).__name__}: {error}", secrets)
    text = _scrub(_short(response.text, 200), secrets)
    if response.status_code in (401, 403):
        if headers:
            fix = "the key in the variable named by api_key_env is not the server's (vLLM: its --api-key); check it"
        elif address.credentials:
            fix = "check the user:password in base_url"
        else:
            fix = "the server wants a key: export MY_KEY=<the server's key> and pass api_key_env=MY_KEY"
        raise ModelArgsError(
            f"m1-server: {address.label} refuses the credentials (HTTP {response.status_code} on /v1/models: "
            f"{text}); {fix}"
        )
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {text}"
    return list(response.json().get("data") or [])


class M1Server(M1LM):
    """lm-eval model ``m1-server``: see the module docstring and docs/models.md ("m1-server")."""

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
        stall_timeout: Any = "auto",
        hedge: Any = True,
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
        if unknown:
            name = sorted(unknown)[0]
            if name == "api_key":
                raise ModelArgsError(
                    "m1-server does not take the key itself (model_args end up in logs and results files); put it in "
                    "an environment variable and pass its name: api_key_env=MY_KEY_VARIABLE"
                )
            raise ModelArgsError(
                f"model_arg {name!r} is not an m1-server argument; use base_url, model, tokenizer, api_key_env, "
                f"max_concurrency, timeout, max_retries, stall_timeout, hedge, max_model_len, token_ids (see "
                f"docs/models.md, m1-server)"
            )
        # every value checked before any network call or tokenizer load
        check_schedule(schedule)
        if values.is_not_set(base_url):
            raise ModelArgsError("m1-server needs model_arg base_url=http://HOST:PORT (several separated by |)")
        addresses = parse_base_url(values.text(base_url, "base_url", SOURCE))  # type: ignore[arg-type]
        model = values.text(model, "model", SOURCE, optional=True)
        tokenizer = values.text(tokenizer, "tokenizer", SOURCE, optional=True)
        concurrency = values.whole(max_concurrency, "max_concurrency", SOURCE, minimum=1)
        call_timeout = values.number(timeout, "timeout", SOURCE, above=0.0, hint="seconds for one completion call")
        retries = values.whole(max_retries, "max_retries", SOURCE, minimum=0)
        stall = (
            None
            if isinstance(stall_timeout, str) and stall_timeout.strip().lower() == "auto"
            else values.number(
                stall_timeout, "stall_timeout", SOURCE, above=0.0, hint="seconds without a token, or auto"
            )
        )
        hedged = values.boolean(hedge, "hedge", SOURCE)
        context = values.token_count(max_model_len, "max_model_len", SOURCE, optional=True)
        token_mode = values.choice(token_ids, "token_ids", SOURCE, TOKEN_ID_MODES)
        remote_code = values.boolean(trust_remote_code, "trust_remote_code", SOURCE)
        bos = values.boolean(add_bos_token, "add_bos_token", SOURCE)
        base_seed = values.whole(seed, "seed", SOURCE, minimum=0, maximum=2**63 - 1)
        assert concurrency is not None and call_timeout is not None and retries is not None
        key = read_api_key(api_key_env)
        if key is not None and any(address.credentials for address in addresses):
            raise ModelArgsError(
                "model_arg base_url carries user:password@ (sent as HTTP Basic auth) and api_key_env a key (sent as "
                "Bearer): both need the Authorization header; drop one (vLLM's --api-key takes the Bearer key)"
            )
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        secrets = tuple(
            secret
            for secret in (key, *(part for a in addresses if a.credentials for part in a.credentials))
            if secret and len(secret) >= 4  # scrubbing a one-letter password would garble messages
        )
        labels = " | ".join(address.label for address in addresses)
        cards: dict[str, list[dict[str, Any]]] = {}
        for address in addresses:
            answer = _fetch_models(address, headers, call_timeout, secrets)
            if isinstance(answer, str):
                logger.warning("m1-server: %s does not answer /v1/models (%s)", address.label, answer)
            else:
                cards[address.url] = answer
        if not cards and not (model and tokenizer and context):
            raise ModelArgsError(
                f"m1-server: no server answers at {labels}; start it (e.g. vllm serve MODEL --port 8000) or check "
                f"base_url (to start without a server, pass model=, tokenizer= and max_model_len=)"
            )
        served = [card.get("id") for answer in cards.values() for card in answer]
        if model is None:
            if not served:
                raise ModelArgsError(f"m1-server: the server at {labels} lists no model; pass model=<name>")
            model = str(served[0])
        elif cards and model not in served:
            raise ModelArgsError(
                f"m1-server: model={model} is not served at {labels} (it serves {', '.join(map(str, served))}); "
                f"pass one of those as model="
            )
        if context is None:
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
            context = min(lengths)
        tokenizer_source = tokenizer or model
        hf_tokenizer = _load_tokenizer(str(tokenizer_source), remote_code)
        settings = ServerSettings(
            model=str(model),
            max_concurrency=concurrency,
            timeout=call_timeout,
            max_retries=retries,
            stall_timeout=stall,
            hedge=hedged,
            token_ids=token_mode,
            headers=headers,
            secrets=secrets,
        )
        self.urls = [address.url for address in addresses]  # without credentials
        self._server_settings = settings
        backend = Backend(
            model_name=str(model),
            tokenizer=hf_tokenizer,
            max_model_len=int(context),
            sampling_keys=SAMPLING_KEYS,
            start_engine=lambda: ServerStepEngine(addresses, settings, hf_tokenizer),
        )
        super().__init__(backend, seed=base_seed, schedule=schedule, add_bos_token=bos)
        logger.info(
            "m1-server: %s at %s (max_model_len=%d, max_concurrency=%d per server)",
            model,
            labels,
            int(context),
            concurrency,
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


__all__ = [
    "M1Server",
    "ServerAddress",
    "ServerStepEngine",
    "guard_lm_eval_model_args",
    "looks_like_key",
    "mask_lm_eval_results",
    "mask_log_record",
    "mask_url",
    "parse_base_url",
    "split_base_urls",
]
