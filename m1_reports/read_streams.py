"""Reading the JSON-lines files of a run, streamed: lm-eval's samples files and the m1 models' generation records.

Each line is parsed once (the C scanner) and only the fields a report needs are kept: numbers in compact
arrays, with each row's byte offset (the question browser reads the few rows it shows again, by seeking there),
and every row handed to a :data:`DocNoter` in the same pass (the question browser's question text).  Every
problem is a :class:`~m1_base.errors.ReportInputError` naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m1_base.errors import ReportInputError, located
from m1_reports.regular_files import open_regular

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 512  # lines between progress callbacks

Progress = Callable[[int], None]  # called with the number of bytes read since the last call
# Called with every samples-file row read (one per document): (doc_id, row).
DocNoter = Callable[[Any, Mapping[str, Any]], None]


# ---------------------------------------------------------------------------------------------- JSON lines


def _bad_line(path: Path, lineno: int, error: ValueError) -> ReportInputError:
    if isinstance(error, json.JSONDecodeError):
        detail = f"{error.msg}, column {error.colno}"
    else:
        detail = str(error)
    return ReportInputError(
        f"line is not valid JSON ({detail})",
        path=path,
        line=lineno,
        hint="the file is truncated or corrupted; re-run the task, or remove the run's files",
    )


_raw_decode = json.JSONDecoder().raw_decode


def loads_line(raw: bytes) -> Any:
    """``json.loads`` of one line, minus its generic overheads (encoding detection, trailing-space regex).

    Same parser (the C scanner), same result; anything unusual (leading spaces, extra data) takes the
    ordinary ``json.loads`` path, which also gives the usual error messages.
    """
    text = raw.decode("utf-8")
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)
    return value


def iter_jsonl(path: Path, progress: Progress | None = None) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(line number, byte offset, object)`` for every non-blank line; a line that is not a JSON object is an
    error."""
    loads = loads_line
    pending = 0
    offset = 0
    with open_regular(path) as handle:
        for lineno, raw in enumerate(handle, 1):
            start = offset
            offset += len(raw)
            if progress is not None:
                pending += len(raw)
                if lineno % PROGRESS_EVERY == 0:
                    progress(pending)
                    pending = 0
            if raw.isspace():
                continue
            try:
                row = loads(raw)
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
                raise _bad_line(path, lineno, error) from None
            if not isinstance(row, dict):
                raise ReportInputError("line is not a JSON object", path=path, line=lineno)
            yield lineno, start, row
    if progress is not None and pending:
        progress(pending)


# --------------------------------------------------------------------------------------- generation records

#: the numeric fields of a generation record (m1_models.records.RECORD_SCHEMA) the report reads, in the order of
#: the tuples read_generations returns
RECORD_COLUMNS = (
    "thinking_tokens", "answer_tokens", "prompt_tokens", "budget", "budget_hit", "ignore_rounds", "forced"
)  # fmt: skip
#: per document, over all its generation records (lm-eval's ``repeats`` give a document several): the tokens generated
#: (thinking + answer) and how many records; the columns of :attr:`GenerationTable.totals`
TOTAL_COLUMNS = ("generated_tokens", "generations")


def _score(value: Any, path: Path, lineno: int, name: str) -> float:
    """A per-sample metric value as a float in [0, 1]: NaN when absent or a corpus metric's per-sample items (a
    list, as lm-eval writes for bleu or f1); true/false as 1/0; anything else (a string, NaN, infinity, a number
    outside [0, 1]) is an error naming the file, line and metric."""
    if value is None or isinstance(value, list | dict):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:  # False for NaN
        return float(value)
    raise ReportInputError(
        f'"{name}" is {value!r}, not a number in [0, 1]',
        path=path,
        line=lineno,
        hint="m1-report reads accuracies as fractions; re-run the task, or correct the samples file",
    )


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class GenerationTable:
    """The numbers of one ``m1_generations_*.jsonl``: ``index[(doc_id, prompt_hash)]`` is a row of ``values``
    (columns :data:`RECORD_COLUMNS` of the document's first record, NaN where it lacks a field) and of ``totals``
    (columns :data:`TOTAL_COLUMNS`: every record of the document counted)."""

    path: Path
    index: dict[tuple[Any, str], int]
    values: np.ndarray
    schedule: str | None = None  # the first record's schedule (one model instance writes a file)
    totals: np.ndarray | None = None  # None: one record per document, totals from ``values``

    def total_values(self) -> np.ndarray:
        """One row of :data:`TOTAL_COLUMNS` per document."""
        if self.totals is not None:
            return self.totals
        if not len(self.values):
            return np.empty((0, len(TOTAL_COLUMNS)))
        thinking, answer = (self.values[:, RECORD_COLUMNS.index(name)] for name in ("thinking_tokens", "answer_tokens"))
        return np.column_stack([thinking + answer, np.ones(len(self.values))])

    def __len__(self) -> int:
        return len(self.index)


def _record_values(raw: list[tuple[Any, ...]]) -> np.ndarray:
    if not raw:
        return np.empty((0, len(RECORD_COLUMNS)))
    try:
        return np.array(raw, dtype=float)  # None -> NaN, bool -> 0/1
    except (TypeError, ValueError):
        return np.array([[_number(v) for v in row] for row in raw], dtype=float)


def read_generations(path: Path, progress: Progress | None = None) -> GenerationTable:
    """The numeric fields of an ``m1_generations_*.jsonl`` file, keyed by (doc_id, prompt_hash)."""
    index: dict[tuple[Any, str], int] = {}
    raw: list[tuple[Any, ...]] = []
    repeats: dict[int, list[float]] = {}  # row -> [tokens, records] of a document with more than one record
    schedule: str | None = None
    for lineno, _, row in iter_jsonl(path, progress):
        get = row.get
        if not raw and schedule is None and get("schedule") is not None:
            schedule = str(get("schedule"))
        doc_id = get("doc_id")
        if doc_id is None:
            raise ReportInputError("generation record without doc_id", path=path, line=lineno)
        key = (doc_id, get("prompt_hash", ""))
        if key in index:  # another sample of the document (lm-eval's repeats): counted in the totals only
            position = index[key]
            first = raw[position]
            total = repeats.setdefault(position, [_number(first[0]) + _number(first[1]), 1.0])
            total[0] += _number(get("thinking_tokens")) + _number(get("answer_tokens"))
            total[1] += 1
            continue
        index[key] = len(raw)
        raw.append(
            (
                get("thinking_tokens"),
                get("answer_tokens"),
                get("prompt_tokens"),
                get("budget"),
                get("budget_hit"),
                get("ignore_rounds"),
                get("forced"),
            )
        )
    values = _record_values(raw)
    table = GenerationTable(path, index, values, schedule)
    if repeats:
        totals = table.total_values().copy()
        for position, (tokens, count) in repeats.items():
            totals[position] = (tokens, count)
        table.totals = totals
        logger.info(
            "%s %d documents have several generation records (repeats): their first record gives the sample's "
            "columns, and all of them its tokens per question",
            located(path, None, ""),
            len(repeats),
        )
    return table


# -------------------------------------------------------------------------------------------- sample files


@dataclass
class SampleColumns:
    """Columns of the samples frame, filled file by file in compact arrays (8 bytes a number)."""

    run: array = field(default_factory=lambda: array("i"))
    task: array = field(default_factory=lambda: array("i"))  # codes into task_names
    task_names: list[str] = field(default_factory=list)
    doc_id: list[Any] = field(default_factory=list)
    line: array = field(default_factory=lambda: array("q"))
    offset: array = field(default_factory=lambda: array("q"))  # the row's byte offset in its file
    acc: array = field(default_factory=lambda: array("d"))
    acc_strict: array = field(default_factory=lambda: array("d"))
    no_answer: array = field(default_factory=lambda: array("d"))
    doc_hash: list[str] = field(default_factory=list)
    record: array = field(default_factory=lambda: array("q"))  # row in record_values, -1 for none
    record_blocks: list[np.ndarray] = field(default_factory=list)
    total_blocks: list[np.ndarray] = field(default_factory=list)
    record_rows: int = 0

    def task_code(self, task: str) -> int:
        if task not in self.task_names:
            self.task_names.append(task)
        return self.task_names.index(task)

    def add_records(self, table: GenerationTable) -> int:
        """Keep a file's record numbers; returns the offset of its rows."""
        offset = self.record_rows
        self.record_blocks.append(table.values)
        self.total_blocks.append(table.total_values())
        self.record_rows += len(table.values)
        return offset

    def record_values(self) -> np.ndarray:
        """One row of :data:`RECORD_COLUMNS` per sample (NaN without a record)."""
        return self._per_sample(self.record_blocks, len(RECORD_COLUMNS))

    def total_values(self) -> np.ndarray:
        """One row of :data:`TOTAL_COLUMNS` per sample (NaN without a record)."""
        return self._per_sample(self.total_blocks, len(TOTAL_COLUMNS))

    def _per_sample(self, blocks: list[np.ndarray], width: int) -> np.ndarray:
        out = np.full((len(self.record), width), np.nan)
        if blocks:
            positions = np.frombuffer(self.record, dtype=np.int64) if len(self.record) else np.empty(0, np.int64)
            have = positions >= 0
            out[have] = np.vstack(blocks)[positions[have]]
        return out


@dataclass
class SampleFileSummary:
    """What streaming one samples file found: its rows, how many had a generation record, and what the protocol
    header reads from it."""

    path: Path
    run: int
    task: str
    rows: int
    matched_records: int
    records: int
    prompt_variant: str | None = None  # the first doc's prompt_variant (m1 tasks record it in every doc)
    schedule: str | None = None  # the generation records' schedule


def read_samples(
    path: Path,
    *,
    run: int,
    task: str,
    filter_name: str | None,
    metric: str | None,
    columns: SampleColumns,
    records: GenerationTable | None = None,
    note: DocNoter | None = None,
    progress: Progress | None = None,
) -> SampleFileSummary:
    """Stream one ``samples_<task>_<date>.jsonl`` into ``columns``.

    Only rows of ``filter_name`` are kept (lm-eval writes one row per document and filter).  ``metric`` is
    the accuracy metric (``acc`` for the m1 tasks); ``acc_strict`` and ``no_answer`` are read when present.
    Every row is handed to ``note`` (the question browser's
    :func:`~m1_reports.kept_samples.question_noter`: a document's question text), in the same pass.
    """
    metric = metric or "acc"
    first_line: dict[Any, int] = {}
    rows = matched = 0
    task_code = columns.task_code(task)
    append_doc, append_line, append_offset = columns.doc_id.append, columns.line.append, columns.offset.append
    append_acc, append_strict, append_none = columns.acc.append, columns.acc_strict.append, columns.no_answer.append
    append_hash, append_record = columns.doc_hash.append, columns.record.append
    index_get = records.index.get if records is not None and len(records) else None
    offset = columns.add_records(records) if index_get is not None else 0
    number = _score
    prompt_variant: str | None = None
    for lineno, at, row in iter_jsonl(path, progress):
        if filter_name is not None and row.get("filter", filter_name) != filter_name:
            continue
        try:
            doc_id = row["doc_id"]
        except KeyError:
            raise ReportInputError(
                "sample without doc_id", path=path, line=lineno, hint="not an lm-eval samples file"
            ) from None
        if doc_id in first_line:
            raise ReportInputError(
                f"doc_id {doc_id} appears again (first at line {first_line[doc_id]})",
                path=path,
                line=lineno,
                hint="the file holds more than one run's samples; keep one run per date suffix",
            )
        if not first_line:
            doc = row.get("doc")
            if isinstance(doc, Mapping) and doc.get("prompt_variant"):
                prompt_variant = str(doc["prompt_variant"])
        first_line[doc_id] = lineno
        acc = row.get(metric)
        if type(acc) is not float or not 0.0 <= acc <= 1.0:  # the checks only off the common path
            acc = number(acc, path, lineno, metric)
        strict = row.get("acc_strict")
        if type(strict) is not float or not 0.0 <= strict <= 1.0:
            strict = number(strict, path, lineno, "acc_strict")
        no_answer = row.get("no_answer")
        if type(no_answer) is not float or not 0.0 <= no_answer <= 1.0:
            no_answer = number(no_answer, path, lineno, "no_answer")
        position = -1
        if index_get is not None:
            found = index_get((doc_id, row.get("prompt_hash", "")))
            if found is not None:
                position = offset + found
                matched += 1
        append_doc(doc_id)
        append_line(lineno)
        append_offset(at)
        append_acc(acc)
        append_strict(strict)
        append_none(no_answer)
        append_hash(row.get("doc_hash") or "")
        append_record(position)
        rows += 1
        if note is not None:
            note(doc_id, row)
    columns.run.extend(array("i", [run]) * rows)
    columns.task.extend(array("i", [task_code]) * rows)
    return SampleFileSummary(
        path=path,
        run=run,
        task=task,
        rows=rows,
        matched_records=matched,
        records=len(records) if records is not None else 0,
        prompt_variant=prompt_variant,
        schedule=records.schedule if records is not None else None,
    )
