"""Per-sample generation records of the m1 models, written next to lm-eval's samples files.

The models add one record per request to :data:`SINK` (keyed by lm-eval task name); when lm-eval's
``EvaluationTracker`` saves ``samples_<task>_<date>.jsonl``, the start-up hook calls
:func:`write_records_for_task`, which writes ``m1_generations_<task>_<date>.jsonl`` in the same folder
(atomically: a temporary file renamed into place).  Reports join them to the samples on
(task, doc_id, prompt_hash), or on lm-eval's own ``doc_hash`` and ``prompt_hash``.

The record schema has its home here: :data:`RECORD_FILE_PREFIX` (with :func:`record_file_name`) and
:data:`RECORD_SCHEMA` (the fields, in file order, and what each holds); the models build records with
:func:`make_record` and the reports read them by these names.

Standard library only: the start-up hook imports this module inside lm-eval's process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: a task's records are ``m1_generations_<task>_<date>.jsonl``, beside lm-eval's ``samples_<task>_<date>.jsonl``
RECORD_FILE_PREFIX = "m1_generations_"

#: the fields of one record (one JSON line per request), in file order, and what each holds
RECORD_SCHEMA: dict[str, str] = {
    "task": "lm-eval task name",
    "doc_id": "the document's id, as in the samples file",
    "doc_hash": "lm-eval's hash of the document: the samples' doc_hash",
    "prompt_hash": "lm-eval's hash of the prompt: the samples' prompt_hash",
    "request_hash": "sha256 of the prompt and the gen_kwargs, and of the repeat from 1 on (its key in the "
    "--use_cache database)",
    "repeat": "which of a task's repeats of the request this is: 0, 1, ... K-1 (lm-eval's repeats: K samples)",
    "model": "the model_arg pretrained",
    "schedule": "continuous or rounds",
    "forced": "whether budget forcing ran (max_tokens_thinking given)",
    "budget": "the thinking budget in tokens (null without forcing)",
    "prompt_tokens": "tokens of the prompt",
    "cached_tokens": "prompt tokens of its engine calls not prefilled again (prefix cache, or a session's kept KV)",
    "decoded_tokens": "tokens the engine generated for this request (stop tokens included)",
    "reused_tokens": "tokens taken from another request's engine call with the same prefix (a nested sweep's "
    "larger setting) instead of generated for this one",
    "thinking_tokens": "tokens of the thinking, appended ignore strings included",
    "answer_tokens": "tokens of the answer (of the whole generation without forcing)",
    "ignore_rounds": "early ends of thinking suppressed",
    "budget_hit": "whether the thinking ran out of budget",
    "finish_reasons": "one per engine call, as the engine reported it (stop, length, ...)",
    "servers": "m1-server: the server that answered each engine call, credentials masked (empty in-process)",
    "thinking_text": "the thinking, ignore strings included (without thinking_start)",
    "answer_text": "the answer as generated (the whole generation without forcing)",
}
RECORD_FIELDS: tuple[str, ...] = tuple(RECORD_SCHEMA)


def record_file_name(task: str, date_id: str) -> str:
    """The name of a task's records file (lm-eval's ``date_id`` is the samples file's suffix)."""
    return f"{RECORD_FILE_PREFIX}{task}_{date_id}.jsonl"


def make_record(**fields: Any) -> dict[str, Any]:
    """A record with exactly the fields of :data:`RECORD_SCHEMA`, in its order (a missing or unknown field is a
    programming error, raised as ``TypeError``)."""
    missing = [name for name in RECORD_FIELDS if name not in fields]
    unknown = [name for name in fields if name not in RECORD_SCHEMA]
    if missing or unknown:
        raise TypeError(f"m1 record fields: missing {missing}, unknown {unknown} (see RECORD_SCHEMA)")
    return {name: fields[name] for name in RECORD_FIELDS}


def request_hash(context: str, gen_kwargs: Any) -> str:
    """Identity of one request: its prompt AND its gen_kwargs (two budgets of one prompt are two requests)."""
    canonical = json.dumps([context, gen_kwargs], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


#: the gen_kwarg that numbers the repeats of one request (lm-eval's ``repeats``) from 1 on, inside m1-eval only
REPEAT_KEY = "m1_repeat"


def repeat_args(args: tuple[str, Any], repeat: int) -> tuple[str, Any]:
    """The identity of a request's ``repeat``-th sample: its args for repeat 0, the args with :data:`REPEAT_KEY`
    added from repeat 1 on.  lm-eval's ``repeats: K`` hands a model K identical requests; numbered this way each
    sample has its own key in the ``--use_cache`` database, its own record and its own seed."""
    if not repeat:
        return args
    context, gen_kwargs = args
    return context, {**dict(gen_kwargs or {}), REPEAT_KEY: repeat}


def number_repeats(requests: list[Any]) -> list[Any]:
    """``requests`` with the k-th occurrence of the same args (k >= 1) replaced by a shallow copy whose args are
    :func:`repeat_args` (the start-up hook applies it where lm-eval's ``--use_cache`` looks requests up)."""
    import copy

    seen: dict[str, int] = {}
    out = []
    for request in requests:
        key = request_hash(*request.args)
        repeat = seen.get(key, 0)
        seen[key] = repeat + 1
        if repeat:
            request = copy.copy(request)
            request.arguments = repeat_args(request.args, repeat)  # lm-eval's Instance: args reads arguments
        out.append(request)
    return out


def record_key(task: str, request: str) -> str:
    """Key of a record in lm-eval's ``--use_cache`` database (beside lm-eval's own response entries)."""
    return f"m1-record\x00{task}\x00{request}"


class RecordSink:
    """Thread-safe store of records per task, filled by the models and drained by the writer.

    With ``--use_cache``, records are also kept in lm-eval's cache database (``attach_store``), so that a
    resumed run, whose cached requests never reach the model, still writes a record for every sample.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._store: Any = None

    def attach_store(self, store: Any) -> None:
        self._store = store

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._by_task[str(record["task"])].append(record)
            if self._store is not None:
                self._store[record_key(record["task"], record["request_hash"])] = record

    def recover(self, task: str, request: str) -> dict[str, Any] | None:
        """A record kept in the cache database by an earlier (interrupted) run, if any."""
        if self._store is None:
            return None
        try:
            return self._store.get(record_key(task, request))
        except Exception:  # a cache we cannot read only costs the record, never the evaluation
            logger.debug("m1-eval: cache lookup failed", exc_info=True)
            return None

    def pop(self, task: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._by_task.pop(task, [])

    def clear(self) -> None:
        with self._lock:
            self._by_task.clear()


SINK = RecordSink()


def samples_dir(tracker: Any) -> Path | None:
    """The folder lm-eval's tracker writes samples into (same rule as its ``save_results_samples``)."""
    if not getattr(tracker, "output_path", None):
        return None
    path = Path(tracker.output_path)
    if path.suffix == ".json":
        return path.parent
    return path / str(tracker.general_config_tracker.model_name_sanitized)


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as JSON lines to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            order = lambda r: (r.get("doc_id", 0), r.get("prompt_hash", ""), r.get("repeat") or 0)  # noqa: E731
            for record in sorted(records, key=order):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_records_for_task(tracker: Any, task_name: str, samples: list[dict[str, Any]] = ()) -> Path | None:
    """Write the task's records beside its samples file, with the samples' document ids.

    The models know a request's position among the evaluated documents (lm-eval's ``Instance.doc_id``); the
    samples file carries the document's id in the dataset, which differs under ``--samples``.  A record takes the
    id of the sample with its ``doc_hash`` and ``prompt_hash`` (lm-eval's hashes of the document and prompt);
    where those do not name one sample (two identical documents, a record without ``doc_hash``), its position:
    samples come in position order, so position ``k`` is the ``k``-th document id of the samples.
    """
    records = SINK.pop(task_name)
    positions = list(dict.fromkeys(sample.get("doc_id") for sample in samples))
    first_request: dict[Any, list[str]] = {}  # doc id -> the request hash of each of its samples (repeats)
    for sample in samples:
        args = _first_request_args(sample.get("arguments"))
        if args is not None and sample.get("doc_id") not in first_request:
            repeats = _repeats_of(sample.get("resps"))
            first_request[sample.get("doc_id")] = [request_hash(*repeat_args(args, k)) for k in range(repeats)]
    have = {r.get("request_hash") for r in records}
    for position, doc_id in enumerate(positions):  # requests answered from --use_cache never reached the model
        for request in first_request.get(doc_id, ()):
            if request not in have and (recovered := SINK.recover(task_name, request)):
                records.append({**recovered, "doc_id": position})
                have.add(request)
    by_hashes: dict[tuple[Any, Any], set[Any]] = defaultdict(set)
    for sample in samples:
        by_hashes[(sample.get("doc_hash"), sample.get("prompt_hash"))].add(sample.get("doc_id"))
    for record in records:
        key = (record.get("doc_hash"), record.get("prompt_hash"))
        exact = by_hashes.get(key, ()) if key[0] else ()
        if len(exact) == 1:
            record["doc_id"] = next(iter(exact))
        elif isinstance(record.get("doc_id"), int) and 0 <= record["doc_id"] < len(positions):
            record["doc_id"] = positions[record["doc_id"]]
    folder = samples_dir(tracker)
    if not records or folder is None:
        return None
    path = write_records(folder / record_file_name(task_name, tracker.date_id), records)
    logger.info("m1-eval: wrote %d generation records to %s", len(records), path)
    return path


def _repeats_of(resps: Any) -> int:
    """How many samples a saved sample row holds: lm-eval writes ``resps`` as one list of responses per request
    (``[[r_1, ..., r_K]]`` for a generate_until task with ``repeats: K``)."""
    if not isinstance(resps, list) or not resps:
        return 1
    first = resps[0]
    return max(1, len(first)) if isinstance(first, list) else len(resps)


def _first_request_args(arguments: Any) -> tuple[str, Any] | None:
    """``(context, gen_kwargs)`` of a sample's first request: lm-eval keeps ``[req.args, ...]`` in memory and
    rewrites it to ``{"gen_args_0": {"arg_0": context, "arg_1": gen_kwargs}}`` when it saves the samples."""
    if isinstance(arguments, dict):
        first = arguments.get("gen_args_0")
        return (first.get("arg_0", ""), first.get("arg_1")) if isinstance(first, dict) else None
    if not arguments:
        return None
    context, gen_kwargs = (list(arguments[0]) + [None, None])[:2]
    return context, gen_kwargs
