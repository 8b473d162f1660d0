"""Finding and reading lm-eval 0.4.13 output: results files, samples files, m1 generation records.

Every problem is a :class:`~m1_eval.errors.ReportInputError` naming the file and line.  Sample and
record files are streamed line by line: each line is parsed once with :func:`json.loads` and only the
fields a report needs are kept (the long texts and the doc only for the few samples the sample browser shows).

The module is longer than most in the package because the three kinds of files share one streaming reader,
one error style and the checks between them; splitting it would spread that contract over several files.
"""

from __future__ import annotations

import json
import logging
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from m1_eval.errors import ReportInputError, located
from m1_models.records import RECORD_FILE_PREFIX as GENERATIONS_PREFIX
from m1_reports.naming import BUDGET_KEY, IGNORE_KEY, budget_of, ignore_of, parse_gen_kwargs

logger = logging.getLogger(__name__)

SUPPORTED_LM_EVAL_VERSIONS = ("0.4.13",)
RESULTS_PREFIX = "results_"
SAMPLES_PREFIX = "samples_"
PROGRESS_EVERY = 512  # lines between progress callbacks

Progress = Callable[[int], None]  # called with the number of bytes read since the last call
# Called with each samples-file row kept for the sample browser: (line, row, acc, acc_strict, no_answer).
SampleKeeper = Callable[[int, Mapping[str, Any], float, float, float], None]


# ----------------------------------------------------------------------------------------------- finding runs


@dataclass(frozen=True)
class RunFiles:
    """One lm-eval run: a results file and the samples/records files with the same date suffix."""

    results: Path
    date_id: str

    @property
    def folder(self) -> Path:
        return self.results.parent

    def samples_path(self, task: str) -> Path:
        return self.folder / f"{SAMPLES_PREFIX}{task}_{self.date_id}.jsonl"

    def generations_path(self, task: str) -> Path:
        return self.folder / f"{GENERATIONS_PREFIX}{task}_{self.date_id}.jsonl"


def date_id_of(path: Path) -> str:
    """lm-eval's date suffix of an output file name (its ``get_file_datetime`` rule)."""
    name = path.name
    for suffix in (".jsonl", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[name.rfind("_") + 1 :]


def discover_runs(paths: Iterable[Path | str]) -> list[RunFiles]:
    """The runs in the given folders (``--output_path`` folders, their ``<model>`` subfolders, or results files).

    A folder is searched for ``results_*.json`` itself and, if it has none, in its immediate subfolders.
    Runs are returned in argument order, each folder's runs by date.  The same file given twice counts once.
    """
    runs: list[RunFiles] = []
    seen: set[Path] = set()
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            found = _results_files(path)
        except OSError as error:
            problems.append(located(error.filename or path, None, f"cannot read ({error.strerror or error})"))
            continue
        if found is None:
            problems.append(located(path, None, "no such file or folder"))
            continue
        if not found and path.is_file():
            problems.append(located(path, None, "not an lm-eval results file (results_<date>.json)"))
            continue
        if not found:
            problems.append(
                located(
                    path,
                    None,
                    "no lm-eval results here (no results_*.json in it or its subfolders); pass the folder "
                    "given to lm_eval --output_path, or its <model> subfolder",
                )
            )
            continue
        for result in found:
            key = result.resolve()
            if key in seen:
                continue
            seen.add(key)
            runs.append(RunFiles(result, date_id_of(result)))
    if problems:
        raise ReportInputError(problems[0], more=problems[1:])
    return runs


def _results_files(path: Path) -> list[Path] | None:
    """The results files a command-line path names (None: it does not exist; [] for a file that is not one)."""
    if not path.exists():
        return None
    if path.is_file():
        return [path] if path.suffix == ".json" else []
    found = sorted(path.glob(f"{RESULTS_PREFIX}*.json"))
    if not found:
        subfolders = sorted(p for p in path.iterdir() if p.is_dir())
        found = sorted(result for sub in subfolders for result in sub.glob(f"{RESULTS_PREFIX}*.json"))
    return found


# ------------------------------------------------------------------------------------------- results files


@dataclass
class TaskResult:
    """One task of a results file, for its primary filter (``none`` when present)."""

    task: str
    alias: str
    filter: str | None
    metric: str | None  # the task's accuracy metric: "acc" when present
    values: dict[str, float]  # metric name -> value, e.g. acc, acc_stderr, acc_strict, no_answer
    n: int | None
    gen_kwargs: dict[str, Any]
    n_original: int | None = None  # n-samples "original": documents the task had before --limit
    version: Any = None  # the results file's versions[task] (the task YAML's metadata.version)
    config: dict[str, Any] = field(default_factory=dict)  # configs[task]: the task config as evaluated

    def value(self, name: str) -> float:
        value = self.values.get(name)
        return float(value) if value is not None else math.nan


@dataclass
class RunInfo:
    """What a results file says about a run."""

    files: RunFiles
    model_name: str
    model_source: str | None
    model_args: Any
    revision: str | None
    gen_kwargs: dict[str, Any]  # config.gen_kwargs as given on the command line
    budget: int | str | None  # effective thinking budget (command line, else common to the tasks' configs)
    ignore: int | None
    lm_eval_version: str | None
    date: datetime | None
    limit: Any
    tasks: dict[str, TaskResult]  # leaf tasks, in file order
    groups: dict[str, list[str]]
    raw_config: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    chat_template: str | None = None  # null when --apply_chat_template was not given
    chat_template_recorded: bool = True  # the results file has the chat_template key (lm-eval >= 0.4.3)
    chat_template_sha: str | None = None
    system_instruction: str | None = None
    fewshot_as_multiturn: bool | None = None

    @property
    def path(self) -> Path:
        return self.files.results


def _line_of(text: str, needle: str) -> int | None:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else None


def _load_json_file(path: Path) -> tuple[Any, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ReportInputError(f"not UTF-8 text ({error.reason})", path=path) from None
    except OSError as error:
        raise ReportInputError(f"cannot read ({error.strerror})", path=path) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        raise ReportInputError(
            f"not valid JSON ({error.msg}, column {error.colno})",
            path=path,
            line=error.lineno,
            hint="the file is truncated or not an lm-eval results file; re-run lm_eval or remove it",
        ) from None


def _model_name(data: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    name = data.get("model_name")
    if name:
        return str(name)
    args = config.get("model_args")
    if isinstance(args, str):
        args = parse_gen_kwargs(args)
    if isinstance(args, Mapping):
        for key in ("peft", "delta", "pretrained", "model", "path", "engine"):
            if args.get(key):
                return str(args[key])
    for value in (config.get("model"), data.get("model_name_sanitized")):
        if value:
            return str(value)
    return "unknown-model"


def _revision(config: Mapping[str, Any]) -> str | None:
    args = config.get("model_args")
    if isinstance(args, str):
        args = parse_gen_kwargs(args)
    if isinstance(args, Mapping) and args.get("revision"):
        return str(args["revision"])
    for key in ("model_revision", "model_sha"):
        if config.get(key):
            return str(config[key])
    return None


def _date(data: Mapping[str, Any], date_id: str) -> datetime | None:
    value = data.get("date")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    match = re.match(r"(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})(\.\d+)?", date_id)
    if match:
        try:
            return datetime.fromisoformat(f"{match[1]}T{match[2]}:{match[3]}:{match[4]}{match[5] or ''}").replace(
                tzinfo=UTC
            )
        except ValueError:
            return None
    return None


def _task_result(
    task: str, entry: Mapping[str, Any], data: Mapping[str, Any], run_gen_kwargs: dict[str, Any]
) -> TaskResult:
    by_filter: dict[str, dict[str, float]] = {}
    for key, value in entry.items():
        if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metric, filt = key.split(",", 1)
        by_filter.setdefault(filt, {})[metric] = float(value)
    filt = "none" if "none" in by_filter else (sorted(by_filter)[0] if by_filter else None)
    values = by_filter.get(filt, {}) if filt is not None else {}
    metric = "acc" if "acc" in values else next((m for m in values if not m.endswith("_stderr")), None)
    counts = (data.get("n-samples") or {}).get(task) or {}
    if not isinstance(counts, Mapping):
        counts = {}
    n = entry.get("sample_len")
    if not isinstance(n, int):
        n = counts.get("effective")
    original = counts.get("original")
    config = (data.get("configs") or {}).get(task) or {}
    task_kwargs = config.get("generation_kwargs") if isinstance(config, Mapping) else None
    gen_kwargs = dict(task_kwargs) if isinstance(task_kwargs, Mapping) else dict(run_gen_kwargs)
    return TaskResult(
        task=task,
        alias=str(entry.get("alias") or task).strip(" -") or task,
        filter=filt,
        metric=metric,
        values=values,
        n=n if isinstance(n, int) else None,
        gen_kwargs=gen_kwargs,
        n_original=original if isinstance(original, int) and not isinstance(original, bool) else None,
        version=(data.get("versions") or {}).get(task),
        config=dict(config) if isinstance(config, Mapping) else {},
    )


def read_results(files: RunFiles, *, allow_other_versions: bool = False) -> RunInfo:
    """Parse and check one ``results_<date>.json``."""
    path = files.results
    data, text = _load_json_file(path)
    if not isinstance(data, dict):
        raise ReportInputError("not an lm-eval results file (the JSON is not an object)", path=path, line=1)
    version = data.get("lm_eval_version")
    if version not in SUPPORTED_LM_EVAL_VERSIONS and not allow_other_versions:
        supported = ", ".join(SUPPORTED_LM_EVAL_VERSIONS)
        what = f"written by lm-eval {version}" if version else "has no lm_eval_version (not lm-eval 0.4.13 output)"
        raise ReportInputError(
            f"{what}; m1-report reads lm-eval {supported} output",
            path=path,
            line=_line_of(text, '"lm_eval_version"') if version else None,
            hint="re-run the evaluation with lm-eval 0.4.13, or pass --allow-other-versions to try anyway",
        )
    results = data.get("results")
    if not isinstance(results, dict):
        raise ReportInputError(
            'no "results" object: not an lm-eval results file',
            path=path,
            line=_line_of(text, '"results"'),
            hint="pass the results_<date>.json that lm_eval --output_path wrote",
        )
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    try:
        gen_kwargs = parse_gen_kwargs(config.get("gen_kwargs"))
    except TypeError as error:
        raise ReportInputError(str(error), path=path, line=_line_of(text, '"gen_kwargs"')) from None
    group_subtasks = data.get("group_subtasks") if isinstance(data.get("group_subtasks"), dict) else {}
    group_names = set(group_subtasks) | set(data.get("groups") or {})
    tasks: dict[str, TaskResult] = {}
    for name, entry in results.items():
        if name in group_names:
            continue
        if not isinstance(entry, dict):
            raise ReportInputError(
                f'results entry of task "{name}" is not an object', path=path, line=_line_of(text, f'"{name}"')
            )
        tasks[name] = _task_result(name, entry, data, gen_kwargs)

    budget, ignore = budget_of(gen_kwargs), ignore_of(gen_kwargs)
    if BUDGET_KEY not in gen_kwargs and tasks:
        # The budget may come from the task configs (generation_kwargs in the YAML) instead of the command line.
        budgets = {repr(budget_of(t.gen_kwargs)) for t in tasks.values()}
        ignores = {repr(ignore_of(t.gen_kwargs)) for t in tasks.values()}
        if len(budgets) == 1:
            first = next(iter(tasks.values())).gen_kwargs
            budget = budget_of(first)
            ignore = ignore_of(first) if len(ignores) == 1 else None
    elif IGNORE_KEY not in gen_kwargs and budget is not None:
        ignore = 0

    model_source = data.get("model_source") or config.get("model")
    return RunInfo(
        files=files,
        model_name=_model_name(data, config),
        model_source=str(model_source) if model_source else None,
        model_args=config.get("model_args"),
        revision=_revision(config),
        gen_kwargs=gen_kwargs,
        budget=budget,
        ignore=ignore,
        lm_eval_version=str(version) if version else None,
        date=_date(data, files.date_id),
        limit=config.get("limit"),
        tasks=tasks,
        groups={str(k): list(v) for k, v in group_subtasks.items() if isinstance(v, list)},
        raw_config=dict(config),
        chat_template=_optional_text(data.get("chat_template")),
        chat_template_recorded="chat_template" in data,
        chat_template_sha=_optional_text(data.get("chat_template_sha")),
        system_instruction=_optional_text(data.get("system_instruction")),
        fewshot_as_multiturn=data.get("fewshot_as_multiturn") if isinstance(data.get("fewshot_as_multiturn"), bool)
        else None,
    )


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


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


def _loads_line(raw: bytes) -> Any:
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


def iter_jsonl(path: Path, progress: Progress | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; a line that is not a JSON object is an error."""
    loads = _loads_line
    pending = 0
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ReportInputError(f"cannot read ({error.strerror})", path=path) from None
    with handle:
        for lineno, raw in enumerate(handle, 1):
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
            yield lineno, row
    if progress is not None and pending:
        progress(pending)


# --------------------------------------------------------------------------------------- generation records

# Numeric fields of a generation record, in the order of the tuples read_generations returns.
RECORD_FIELDS = ("thinking_tokens", "answer_tokens", "prompt_tokens", "budget", "budget_hit", "ignore_rounds", "forced")


def _score(value: Any) -> float:
    """A per-sample metric value as float (NaN when absent or not a number)."""
    if value is None or isinstance(value, list | dict | str):
        return math.nan
    return float(value)


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
    (columns :data:`RECORD_FIELDS`, NaN where a record lacks a field)."""

    path: Path
    index: dict[tuple[Any, str], int]
    values: np.ndarray
    schedule: str | None = None  # the first record's schedule (one model instance writes a file)

    def __len__(self) -> int:
        return len(self.index)


def _record_values(raw: list[tuple[Any, ...]]) -> np.ndarray:
    if not raw:
        return np.empty((0, len(RECORD_FIELDS)))
    try:
        return np.array(raw, dtype=float)  # None -> NaN, bool -> 0/1
    except (TypeError, ValueError):
        return np.array([[_number(v) for v in row] for row in raw], dtype=float)


def read_generations(path: Path, progress: Progress | None = None) -> GenerationTable:
    """The numeric fields of an ``m1_generations_*.jsonl`` file, keyed by (doc_id, prompt_hash)."""
    index: dict[tuple[Any, str], int] = {}
    raw: list[tuple[Any, ...]] = []
    schedule: str | None = None
    for lineno, row in iter_jsonl(path, progress):
        get = row.get
        if not raw and schedule is None and get("schedule") is not None:
            schedule = str(get("schedule"))
        doc_id = get("doc_id")
        if doc_id is None:
            raise ReportInputError("generation record without doc_id", path=path, line=lineno)
        key = (doc_id, get("prompt_hash", ""))
        if key in index:
            logger.warning(
                "%s repeated generation record for doc_id %s; keeping the first", located(path, lineno, ""), doc_id
            )
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
    return GenerationTable(path, index, _record_values(raw), schedule)


# -------------------------------------------------------------------------------------------- sample files


@dataclass
class SampleColumns:
    """Columns of the samples frame, filled file by file in compact arrays (8 bytes a number)."""

    run: array = field(default_factory=lambda: array("i"))
    task: array = field(default_factory=lambda: array("i"))  # codes into task_names
    task_names: list[str] = field(default_factory=list)
    doc_id: list[Any] = field(default_factory=list)
    line: array = field(default_factory=lambda: array("q"))
    acc: array = field(default_factory=lambda: array("d"))
    acc_strict: array = field(default_factory=lambda: array("d"))
    no_answer: array = field(default_factory=lambda: array("d"))
    doc_hash: list[str] = field(default_factory=list)
    record: array = field(default_factory=lambda: array("q"))  # row in record_values, -1 for none
    record_blocks: list[np.ndarray] = field(default_factory=list)
    record_rows: int = 0

    def task_code(self, task: str) -> int:
        if task not in self.task_names:
            self.task_names.append(task)
        return self.task_names.index(task)

    def add_records(self, table: GenerationTable) -> int:
        """Keep a file's record numbers; returns the offset of its rows."""
        offset = self.record_rows
        self.record_blocks.append(table.values)
        self.record_rows += len(table.values)
        return offset

    def record_values(self) -> np.ndarray:
        """One row of :data:`RECORD_FIELDS` per sample (NaN without a record)."""
        out = np.full((len(self.record), len(RECORD_FIELDS)), np.nan)
        if self.record_blocks:
            positions = np.frombuffer(self.record, dtype=np.int64) if len(self.record) else np.empty(0, np.int64)
            have = positions >= 0
            out[have] = np.vstack(self.record_blocks)[positions[have]]
        return out


@dataclass
class SampleFileSummary:
    path: Path
    run: int
    task: str
    rows: int
    wrong: int
    unanswered: int
    matched_records: int
    records: int
    browser_kept: int
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
    keep: SampleKeeper | None = None,
    keep_limit: int = 0,
    progress: Progress | None = None,
) -> SampleFileSummary:
    """Stream one ``samples_<task>_<date>.jsonl`` into ``columns``.

    Only rows of ``filter_name`` are kept (lm-eval writes one row per document and filter).  ``metric`` is
    the accuracy metric (``acc`` for the m1 tasks); ``acc_strict`` and ``no_answer`` are read when present.
    The first ``keep_limit`` wrong or unanswered rows are handed to ``keep`` (the sample browser's
    :func:`~m1_reports.browser.sample_keeper`), in the same pass.
    """
    metric = metric or "acc"
    first_line: dict[Any, int] = {}
    rows = wrong = unanswered = matched = kept = 0
    task_code = columns.task_code(task)
    append_doc, append_line = columns.doc_id.append, columns.line.append
    append_acc, append_strict, append_none = columns.acc.append, columns.acc_strict.append, columns.no_answer.append
    append_hash, append_record = columns.doc_hash.append, columns.record.append
    index_get = records.index.get if records is not None and len(records) else None
    offset = columns.add_records(records) if index_get is not None else 0
    number = _score
    prompt_variant: str | None = None
    for lineno, row in iter_jsonl(path, progress):
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
        if type(acc) is not float:
            acc = number(acc)
        strict = row.get("acc_strict")
        if type(strict) is not float:
            strict = number(strict)
        no_answer = row.get("no_answer")
        if type(no_answer) is not float:
            no_answer = number(no_answer)
        position = -1
        if index_get is not None:
            found = index_get((doc_id, row.get("prompt_hash", "")))
            if found is not None:
                position = offset + found
                matched += 1
        append_doc(doc_id)
        append_line(lineno)
        append_acc(acc)
        append_strict(strict)
        append_none(no_answer)
        append_hash(row.get("doc_hash") or "")
        append_record(position)
        rows += 1
        is_wrong = acc < 1.0  # False for NaN
        is_unanswered = no_answer > 0
        wrong += is_wrong
        unanswered += is_unanswered
        if keep is not None and (is_wrong or is_unanswered) and kept < keep_limit:
            keep(lineno, row, acc, strict, no_answer)
            kept += 1
    columns.run.extend(array("i", [run]) * rows)
    columns.task.extend(array("i", [task_code]) * rows)
    return SampleFileSummary(
        path=path,
        run=run,
        task=task,
        rows=rows,
        wrong=wrong,
        unanswered=unanswered,
        matched_records=matched,
        records=len(records) if records is not None else 0,
        browser_kept=kept,
        prompt_variant=prompt_variant,
        schedule=records.schedule if records is not None else None,
    )
