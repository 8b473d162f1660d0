"""Finding lm-eval 0.4.13 runs and reading their results files (``results_<date>.json``).

Each results file is one run (:class:`RunInfo`); its samples and m1 generation records are the files with the
same date suffix (:class:`RunFiles`), streamed by :mod:`m1_reports.read_streams`.  Every problem is a
:class:`~m1_base.errors.ReportInputError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from m1_base.errors import ReportInputError, located
from m1_models.records import RECORD_FILE_PREFIX as GENERATIONS_PREFIX
from m1_reports.naming import BUDGET_KEY, IGNORE_KEY, budget_of, ignore_of, run_args
from m1_reports.regular_files import kind_of, open_regular
from m1_tasks.benchmarks import split_repeats
from m1_tasks.repeats import REPEAT_FAMILIES

SUPPORTED_LM_EVAL_VERSIONS = ("0.4.13",)
RESULTS_PREFIX = "results_"
SAMPLES_PREFIX = "samples_"


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
        if isinstance(found, str):
            problems.append(located(path, None, f"is {found}, not an lm-eval output folder or results file"))
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


def _results_files(path: Path) -> list[Path] | str | None:
    """The results files a command-line path names (None: it does not exist; [] for a file that is not one; what
    it is, for a path that is neither a folder nor a regular file: a FIFO, a socket, a device)."""
    if not path.exists():
        return None
    mode = os.stat(path).st_mode
    if not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
        return kind_of(mode)
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

    @property
    def repeats(self) -> int:
        """K, the samples per question (lm-eval's ``repeats``): the config's, else the largest k of the results'
        ``maj@k``/``pass@k``/``avg@k``, else the ``_k<K>`` of an m1 task's name; 1 for a one-sample run."""
        configured = self.config.get("repeats")
        if isinstance(configured, int) and not isinstance(configured, bool) and configured >= 1:
            return configured
        return max(self.ks(), default=None) or split_repeats(self.task)[1] or 1

    def ks(self, family: str = "maj") -> list[int]:
        """The k of every ``<family>@k`` in the results (``maj``, ``pass``, ``avg``), in order."""
        return sorted(k for name in self.values if (k := repeat_k(name, family)) is not None)


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
        with open_regular(path) as handle:
            text = handle.read().decode("utf-8")
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
        args = run_args(args)
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
        args = run_args(args)
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


# Metrics the report reads besides the task's accuracy metric; all of them are fractions (so are the K-sample
# metrics maj@k, pass@k and avg@k, :func:`repeat_k`).
FRACTION_METRICS = ("acc_strict", "no_answer")


def repeat_k(name: str, family: str | None = None) -> int | None:
    """k of a K-sample metric's name (``maj@4`` -> 4; :data:`m1_tasks.repeats.REPEAT_FAMILIES`, or ``family``
    alone), None for any other name."""
    head, at, tail = name.partition("@")
    if at and (head == family if family else head in REPEAT_FAMILIES) and tail.isascii() and tail.isdigit():
        k = int(tail)
        return k if k >= 1 else None
    return None
# lm-eval's stderr when it was not computed (bootstrap_iters=0, or a metric without one).
NO_STDERR = "N/A"


def _metric_line(text: str, task: str, key: str) -> int | None:
    """The line of ``"key"`` in the results entry of ``task`` (the first such entry in the file)."""
    start = text.find(f'"{task}": {{')
    index = text.find(f'"{key}"', max(start, 0))
    return text.count("\n", 0, index) + 1 if index >= 0 else _line_of(text, f'"{key}"')


def _fraction(value: Any, *, stderr: bool, task: str, key: str, path: Path, text: str) -> float:
    """A metric value of a results file as the report reads it: a number in [0, 1] (a stderr may also be
    lm-eval's ``"N/A"``: NaN).  Anything else is a one-line error naming the file, task and metric: a value the
    report cannot show is never replaced by another metric's."""
    if stderr and value == NO_STDERR:
        return math.nan
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0:  # False for NaN
        return float(value)
    shown = f"the string {value!r}" if isinstance(value, str) else json.dumps(value, allow_nan=True, default=str)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ReportInputError(
        f'{task} "{key}" is {shown}, not a number in [0, 1]' + (f' (or "{NO_STDERR}")' if stderr else ""),
        path=path,
        line=_metric_line(text, task, key),
        hint="m1-report reads accuracies as fractions, as lm-eval writes them; re-run the task, or correct the "
        "results file",
    )


def _task_result(
    task: str,
    entry: Mapping[str, Any],
    data: Mapping[str, Any],
    run_gen_kwargs: dict[str, Any],
    path: Path,
    text: str,
) -> TaskResult:
    by_filter: dict[str, dict[str, Any]] = {}
    for key, value in entry.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        by_filter.setdefault(filt, {})[metric] = value
    filt = "none" if "none" in by_filter else (sorted(by_filter)[0] if by_filter else None)
    raw = by_filter.get(filt, {}) if filt is not None else {}
    metric = "acc" if "acc" in raw else next((m for m in raw if not m.endswith("_stderr")), None)
    # the metrics the report reads are checked (whatever their type: never a silent swap to another metric);
    # the others are kept when they are numbers
    read = {name for name in (metric, *FRACTION_METRICS) if name is not None}
    values: dict[str, float] = {}
    for name, value in raw.items():
        base = name.removesuffix("_stderr")
        if base in read or repeat_k(base) is not None:
            values[name] = _fraction(value, stderr=name != base, task=task, key=f"{name},{filt}", path=path, text=text)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values[name] = float(value)
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
        gen_kwargs = run_args(config.get("gen_kwargs"))
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
        tasks[name] = _task_result(name, entry, data, gen_kwargs, path, text)

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
