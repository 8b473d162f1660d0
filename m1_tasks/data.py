"""The m1 evaluation data: ``m1_eval_data.json`` of the Hugging Face dataset ``UCSC-VLAA/m1_eval_data``.

The file maps a source name (``MedQA_USLME_test``, ``NEJM``, ...) to a list of records
``{"question": str, "options": {"A": str, ...}, "answer": str, "answer_idx": "A"}``.

Where it comes from:

* ``$M1_EVAL_DATA=/path/file.json``: that local file (same structure; the md5 check is skipped, logged at INFO);
* otherwise ``huggingface_hub.hf_hub_download`` into the usual HF cache (works offline once cached), checked
  against the md5 of the file the paper evaluated on.

Every record is kept, as m1's evaluation script scores every record of its data file (how that file was
collected is where m1 filtered).  Records whose answer text disagrees with ``options[answer_idx]`` (after
stripping whitespace; one ``HumanityLastExam`` record of the official file) are reported: at INFO for the
md5-checked official file, with a WARNING naming the task and indices for a local file, which keeps them unless
the task metadata asks ``drop_mismatched`` (``--metadata '{"drop_mismatched": true}'``).  A source whose record
count differs from the paper's is logged as a WARNING with both numbers.  Every problem a user can fix raises
:class:`M1DataError` with one line naming the file, source, record index or field, and the fix.

The parsed file and each source's checked records are cached per path, so a run of ten tasks reads the file once.
Which sources the tasks read and how many records the paper evaluated of each: :mod:`m1_tasks.benchmarks`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m1_base.errors import M1DataError
from m1_tasks.benchmarks import EXPECTED_COUNTS, task_of_source
from m1_tasks.prompt import PLAIN, normalize_variant, options_rows

# A child of lm-eval's logger: under the ``lm_eval`` command these lines appear with lm-eval's own (INFO by
# default), which does not propagate to the root logger.
logger = logging.getLogger("lm_eval.m1_tasks.data")

DATA_ENV = "M1_EVAL_DATA"
HF_REPO_ID = "UCSC-VLAA/m1_eval_data"
HF_FILENAME = "m1_eval_data.json"
EXPECTED_MD5 = "fe50ce67a958cfa9bc958a51b2502e57"

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
DEMO_FILE = DEMO_DIR / "m1_demo.json"
#: ``m1_data: demo:<name>`` reads the packaged file ``demo_data/<name>.json`` (``demo`` alone: m1_demo.json)
DEMO_PREFIX = "demo:"


def packaged_demo_file(data: str) -> Path | None:
    """The packaged file ``data`` names (``demo`` -> m1_demo.json, ``demo:<name>`` -> demo_data/<name>.json);
    None when ``data`` names no packaged file."""
    if data == "demo":
        return DEMO_FILE
    if data.startswith(DEMO_PREFIX) and data[len(DEMO_PREFIX) :].replace("_", "").isalnum():
        return DEMO_DIR / f"{data[len(DEMO_PREFIX) :]}.json"
    return None

DOCUMENT_FIELDS = ("question", "options", "answer", "answer_idx")


@dataclass(frozen=True)
class DataFile:
    path: Path
    expected_md5: str | None  # None: a local file, not checked
    origin: str  # for messages: "M1_EVAL_DATA", "Hugging Face dataset ...", "packaged demo data", ...


def _one_line(text: Any, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _local_file(path: str | os.PathLike, origin: str) -> DataFile:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise M1DataError(
            f"{origin}={str(path)!r}: no such file; point {DATA_ENV} at a copy of {HF_FILENAME} "
            f"(or unset it to download {HF_REPO_ID})"
        )
    return DataFile(resolved.resolve(), None, origin)


def _download() -> DataFile:
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id=HF_REPO_ID, filename=HF_FILENAME, repo_type="dataset")
    except Exception as error:  # offline, no network, gated, ... all have the same fix
        try:
            from huggingface_hub import constants

            offline = bool(constants.HF_HUB_OFFLINE)
        except Exception:
            offline = False
        cause = (
            "offline (HF_HUB_OFFLINE) and not in the Hugging Face cache"
            if offline
            else f"{type(error).__name__}: {_one_line(error, 160)}"
        )
        raise M1DataError(
            f"cannot get {HF_FILENAME} of the Hugging Face dataset {HF_REPO_ID} ({cause}); "
            f"set {DATA_ENV}=/path/to/{HF_FILENAME} to use a local copy, or download it once with network"
        ) from error
    return DataFile(Path(path).resolve(), EXPECTED_MD5, f"Hugging Face dataset {HF_REPO_ID}")


def resolve_data_file(data: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> DataFile:
    """Which file to read: ``data`` (``"demo"`` = the packaged demo file, ``"demo:<name>"`` = the packaged
    ``demo_data/<name>.json``, or a path), else ``$M1_EVAL_DATA``, else the Hugging Face download (cached by
    ``huggingface_hub``)."""
    environ = os.environ if environ is None else environ
    if data is not None and str(data) != "":
        packaged = packaged_demo_file(str(data))
        if packaged is not None:
            if not packaged.is_file():
                raise M1DataError(f"the packaged demo data {packaged} is missing; reinstall m1-eval")
            return DataFile(packaged, None, "packaged demo data")
        return _local_file(data, "data file")
    local = environ.get(DATA_ENV, "").strip()
    if local:
        return _local_file(local, DATA_ENV)
    return _download()


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=8)
def _parse_file(path: str, mtime_ns: int, size: int, expected_md5: str | None, origin: str) -> dict[str, list]:
    """The parsed file (shared between callers: do not mutate).  Cached per path, size and mtime."""
    file = Path(path)
    if expected_md5 is None:
        if origin == DATA_ENV:
            logger.info("m1 data: reading %s from %s=%s (md5 check skipped for local files)", HF_FILENAME, DATA_ENV,
                        path)
    else:
        actual = _file_md5(file)
        if actual != expected_md5:
            raise M1DataError(
                f"{path} (from the {origin}) has md5 {actual}, expected {expected_md5} (the file the m1 paper "
                f"evaluated on); delete it from the Hugging Face cache to download it again, or set "
                f"{DATA_ENV}=/path/to/{HF_FILENAME} to use a local file without the check"
            )
        logger.info("m1 data: %s (md5 %s verified)", path, actual)
    try:
        with file.open("rb") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise M1DataError(f"{path} (from {origin}) is not readable JSON: {_one_line(error, 160)}") from error
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise M1DataError(
            f"{path} (from {origin}) must be a JSON object mapping a source name to a list of records, "
            f"like {HF_FILENAME}"
        )
    return data


def _check_record(record: Any, index: int, source: str, path: str) -> dict[str, Any]:
    where = f"record {index} of source {source!r} in {path}"
    if not isinstance(record, dict):
        raise M1DataError(f"{where}: expected an object with fields {', '.join(DOCUMENT_FIELDS)}, "
                          f"got {type(record).__name__}")
    for field in DOCUMENT_FIELDS:
        if field not in record:
            raise M1DataError(f"{where}: field {field!r} is missing")
    for field in ("question", "answer", "answer_idx"):
        if not isinstance(record[field], str):
            raise M1DataError(f"{where}: field {field!r} must be a string, got {type(record[field]).__name__}")
    if not record["question"].strip():
        raise M1DataError(f"{where}: field 'question' is empty")
    options = record["options"]
    if not isinstance(options, dict) or not options:
        raise M1DataError(f"{where}: field 'options' must be a non-empty object of letter -> text, "
                          f"got {type(options).__name__ if options != {} else 'an empty object'}")
    for letter, text in options.items():
        if not letter.strip():
            raise M1DataError(f"{where}: field 'options' has an empty letter")
        if not isinstance(text, str):
            raise M1DataError(f"{where}: field 'options.{letter}' must be a string, got {type(text).__name__}")
    if record["answer_idx"] not in options:
        raise M1DataError(
            f"{where}: field 'answer_idx' is {record['answer_idx']!r}, not one of the option letters "
            f"{', '.join(options)}"
        )
    return {field: record[field] for field in DOCUMENT_FIELDS}


#: task metadata key (``--metadata '{"drop_mismatched": true}'``) that drops a local file's mismatched records
DROP_MISMATCHED_KEY = "drop_mismatched"


@functools.lru_cache(maxsize=64)
def _source_records(path: str, mtime_ns: int, size: int, expected_md5: str | None, origin: str,
                    source: str, drop_mismatched: bool = False) -> tuple[tuple[dict[str, Any], ...], tuple[int, ...]]:
    """(records kept, indices of records whose answer text differs from ``options[answer_idx]``)."""
    data = _parse_file(path, mtime_ns, size, expected_md5, origin)
    if source not in data:
        raise M1DataError(
            f"source {source!r} is not in {path} (from {origin}; it has: {', '.join(sorted(data)) or 'nothing'}); "
            f"point {DATA_ENV} at a file of the {HF_FILENAME} structure that includes {source!r}"
        )
    official = expected_md5 is not None
    drop = drop_mismatched and not official
    kept: list[dict[str, Any]] = []
    mismatched: list[int] = []
    for index, raw in enumerate(data[source]):
        record = _check_record(raw, index, source, path)
        if record["answer"].strip() != record["options"][record["answer_idx"]].strip():
            mismatched.append(index)
            if drop:
                continue
        record["index"] = index
        kept.append(record)
    if mismatched:
        indices = ", ".join(map(str, mismatched))
        if official:
            logger.info("m1 data: %s (task %s): %d record(s) whose answer text differs from options[answer_idx] "
                        "kept, as m1's evaluation scores every record of the official file: index %s",
                        source, task_of_source(source), len(mismatched), indices)
        elif drop:
            logger.warning("m1 data: %s (task %s): dropped %d record(s) whose answer text differs from "
                           "options[answer_idx] (%s): index %s; %d left", source, task_of_source(source),
                           len(mismatched), DROP_MISMATCHED_KEY, indices, len(kept))
        else:
            logger.warning("m1 data: %s (task %s): %d record(s) whose answer text differs from options[answer_idx] "
                           "in %s: index %s; kept and scored against answer_idx (to drop them: --metadata "
                           "'{\"%s\": true}')", source, task_of_source(source), len(mismatched), path, indices,
                           DROP_MISMATCHED_KEY)
    expected = EXPECTED_COUNTS.get(source)
    if expected is not None and len(kept) != expected:
        logger.warning("m1 data: %s (task %s): %d documents, the paper evaluated %d (from %s)",
                       source, task_of_source(source), len(kept), expected, origin)
    return tuple(kept), tuple(mismatched)


def load_source(
    source: str, data: str | os.PathLike | None = None, *, drop_mismatched: bool = False
) -> list[dict[str, Any]]:
    """The checked records of one source: ``question``, ``options`` (dict), ``answer``, ``answer_idx`` and
    ``index`` (position in the file's list); all of them, or for a local file with ``drop_mismatched`` those whose
    answer text equals ``options[answer_idx]``.  Copies: safe to mutate."""
    file = resolve_data_file(data)
    records, _ = _source_records(*_stat_key(file.path), file.expected_md5, file.origin, source, drop_mismatched)
    return [{**record, "options": dict(record["options"])} for record in records]


def mismatched_indices(source: str, data: str | os.PathLike | None = None) -> list[int]:
    """Indices of the records whose answer text differs from ``options[answer_idx]`` (kept unless dropped)."""
    file = resolve_data_file(data)
    return list(_source_records(*_stat_key(file.path), file.expected_md5, file.origin, source)[1])


def clear_cache() -> None:
    _source_records.cache_clear()
    _parse_file.cache_clear()


def build_dataset(
    source: str, variant: str = PLAIN, data: str | os.PathLike | None = None, *, drop_mismatched: bool = False
):
    """A ``datasets.DatasetDict`` with one ``test`` split for lm-eval.

    Columns: ``question``, ``options`` (list of ``{"letter", "text"}`` rows in the record's order: a dict per
    record would give Arrow a different schema for each letter set), ``answer``, ``answer_idx``, ``source``,
    ``index``, ``prompt_variant``.
    """
    import datasets

    variant = normalize_variant(variant, "build_dataset")
    records = load_source(source, data, drop_mismatched=drop_mismatched)
    features = datasets.Features(
        {
            "question": datasets.Value("string"),
            "options": [{"letter": datasets.Value("string"), "text": datasets.Value("string")}],
            "answer": datasets.Value("string"),
            "answer_idx": datasets.Value("string"),
            "source": datasets.Value("string"),
            "index": datasets.Value("int64"),
            "prompt_variant": datasets.Value("string"),
        }
    )
    columns = {
        "question": [r["question"] for r in records],
        "options": [options_rows(r["options"]) for r in records],
        "answer": [r["answer"] for r in records],
        "answer_idx": [r["answer_idx"] for r in records],
        "source": [source] * len(records),
        "index": [r["index"] for r in records],
        "prompt_variant": [variant] * len(records),
    }
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(columns, features=features)})


def describe_data_source(environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """Where the benchmark data would come from, without downloading anything (for ``m1-eval doctor``)."""
    environ = os.environ if environ is None else environ
    local = environ.get(DATA_ENV, "").strip()
    if local:
        path = Path(local).expanduser()
        if path.is_file():
            return f"{DATA_ENV}={path} (local file, md5 check skipped)", True
        return f"{DATA_ENV}={path}: no such file", False
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id=HF_REPO_ID, filename=HF_FILENAME, repo_type="dataset")
    except Exception:  # an unreadable cache is the same as none
        cached = None
    if isinstance(cached, str):
        return f"Hugging Face cache: {cached} ({HF_REPO_ID}, md5-checked)", True
    return (
        f"{HF_REPO_ID} will be downloaded on first use (needs network; offline, set {DATA_ENV}=/path/to/"
        f"{HF_FILENAME})",
        True,
    )
