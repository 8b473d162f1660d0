"""The question browser (``samples.html``): one question at a time, with every run's answer side by side.

The page is a shell (Jinja2, autoescaped) with the runs and tasks as JSON; each task's questions are a data file
of their own (``questions_<task>.js``), loaded when the task is chosen, so a full Table 1 sweep (11,461 questions x
10+ runs) loads one task at a time.  A task's file holds every question of the task (its text, options, target,
and each run's verdict as one letter: right, wrong, no answer) and, for the questions chosen by
:func:`m1_reports.kept_samples.choose_questions` (``--browser-limit`` per task; those whose verdict changed
between runs first), every run's thinking, answer, the m1 scorer's extraction and rule.  ``m1-report.js`` draws
the list (filters, search, pages of :data:`PAGE_SIZE`) and the chosen question, with ``textContent`` only: model
text never becomes markup.

The runs are shown in the order a sweep is read: by model, then thinking budget, then ignore rounds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from m1_reports.columns import order_tasks, variant_label
from m1_reports.join import Loaded, group_positions
from m1_reports.kept_samples import (
    NO_ANSWER,
    NO_SCORE,
    PARTLY,
    RIGHT,
    WRONG,
    BrowserSample,
    verdict_code,
    verdict_codes,
)
from m1_reports.naming import short_model_name
from m1_reports.read_results import RunInfo
from m1_reports.rescoring import NOT_RESCORED, RULE_TEXT
from m1_reports.suite import scores_with_marker, version_number
from m1_tasks.scoring import ANSWER_MARKER

BROWSER_FILE = "samples.html"
DATA_PREFIX = "questions_"
PAGE_SIZE = 25  # questions per page of the list
MISSING_RUN = "-"  # the run did not evaluate this question
VERDICT_TEXT = {RIGHT: "right", WRONG: "wrong", NO_ANSWER: "no answer", NO_SCORE: "no score", MISSING_RUN: "not run"}
PARTLY_TEXT = "partly right"  # of K samples per question (lm-eval's repeats), some right: only in such reports


def data_file(task: str, taken: set[str]) -> str:
    """``questions_<task>.js``, the task name made safe for a file name (and unique among ``taken``)."""
    stem = DATA_PREFIX + (re.sub(r"[^A-Za-z0-9_-]+", "-", task).strip("-") or "task")
    name, number = f"{stem}.js", 2
    while name in taken:
        name, number = f"{stem}-{number}.js", number + 1
    taken.add(name)
    return name


def run_order(runs: Sequence[RunInfo]) -> list[int]:
    """Run indices in sweep order: by model (first appearance), then thinking budget (none first, a number, then
    ``auto``), then ignore rounds, then the order given."""
    models: dict[str, int] = {}
    for run in runs:
        models.setdefault(short_model_name(run.model_name), len(models))

    def key(index: int) -> tuple[Any, ...]:
        run = runs[index]
        budget = run.budget
        rank = -math.inf if budget is None else float(budget) if isinstance(budget, int) else math.inf
        return (models[short_model_name(run.model_name)], rank, run.ignore or 0, index)

    return sorted(range(len(runs)), key=key)


def verdict_view(sample: BrowserSample, version: Any = None) -> dict[str, str]:
    """The m1 scorer's extraction and rule for a shown sample, and whether it disagrees with the samples file
    (``version``: the run's task version, which names the scorer that wrote the file's score)."""
    verdict = sample.verdict
    if verdict is None or not verdict.scored:
        reason = verdict.reason if verdict is not None else "not re-scored"
        return {"extracted": "–", "rule": NOT_RESCORED, "rule_text": reason, "raw_extracted": "", "disagrees": ""}
    raw = verdict.raw_extracted.strip()
    shown_raw = raw if raw and raw != verdict.extracted and len(raw) <= 120 else ""
    disagrees = ""
    # the file's score of the sample shown: the row's, or of K samples the first's own (avg@1; else unknown)
    file_correct = sample.acc >= 1.0 if sample.repeats == 1 else (
        None if math.isnan(sample.first_acc) else sample.first_acc >= 1.0
    )  # fmt: skip
    if file_correct is not None and verdict.correct != file_correct:
        why = (
            f"the run was scored by an older m1-eval scorer (task version {version}); re-score or re-run"
            if not scores_with_marker(version_number(version))
            else "the file was scored by another scorer than this m1-eval's"
        )
        disagrees = (
            f"This m1-eval's scorer judges it {'correct' if verdict.correct else 'wrong'}, the samples file "
            f"{'correct' if file_correct else 'wrong'}: {why}."
        )
    return {
        "extracted": verdict.extracted or "–",
        "rule": verdict.rule,
        "rule_text": RULE_TEXT.get(verdict.rule, verdict.rule),
        "raw_extracted": shown_raw,
        "disagrees": disagrees,
    }


def _letter(extracted: str, options: Sequence[tuple[str, str]]) -> str:
    """The option letter an extraction names (the letter itself, ``X.``/``X)`` or the option's text), else ""."""
    text = extracted.strip()
    for letter, option in options:
        if text.upper() == letter.upper() or text.lower() == option.strip().lower():
            return letter
        if re.match(rf"^\(?{re.escape(letter)}[.):]", text):
            return letter
    return ""


def browser_data(loaded: Loaded, limit: int) -> tuple[dict[str, Any], dict[str, str]]:
    """(the page's JSON: runs, tasks and their data files, the scorer's rules; {data file: its JavaScript})."""
    runs = loaded.runs
    order = run_order(runs)
    position = {index: i for i, index in enumerate(order)}
    samples = loaded.samples
    codes = verdict_codes(samples) if len(samples) else np.empty(0, dtype="<U1")
    doc_ids = samples["doc_id"].to_numpy() if len(samples) else np.empty(0)
    positions = group_positions(samples)
    labels = loaded.labels
    by_label = {label: index for index, label in enumerate(labels)}
    kept: dict[tuple[str, Any], list[BrowserSample]] = {}
    for sample in loaded.browser:
        kept.setdefault((sample.task, sample.doc_id), []).append(sample)
    files: dict[str, str] = {}
    taken: set[str] = set()
    tasks = []
    for task in order_tasks(loaded.questions):
        questions = loaded.questions[task]
        if not questions:
            continue
        task_runs = sorted((by_label[label] for (label, t) in positions if t == task), key=position.__getitem__)
        column = {run: i for i, run in enumerate(task_runs)}
        row_of = {doc_id: i for i, doc_id in enumerate(questions)}
        verdicts = np.full((len(questions), len(task_runs)), MISSING_RUN, dtype="<U1")
        for run in task_runs:
            rows = positions[(labels[run], task)]
            found = [row_of.get(doc_id) for doc_id in doc_ids[rows]]
            mask = np.array([i is not None for i in found], dtype=bool)
            if mask.any():
                verdicts[np.array([i for i in found if i is not None]), column[run]] = codes[rows][mask]
        entries = []
        texts: dict[str, dict[str, Any]] = {}
        changed = 0
        for i, (doc_id, question) in enumerate(questions.items()):
            strip = "".join(verdicts[i])
            changed += RIGHT in strip and (WRONG in strip or NO_ANSWER in strip)
            shown = kept.get((task, doc_id), [])
            key = str(doc_id)
            entries.append([key, question.text, question.target, [list(o) for o in question.options], strip,
                            1 if shown else 0])  # fmt: skip
            if shown:
                entries_of = sorted((s for s in shown if s.run in column), key=lambda s: column[s.run])
                prompt = entries_of[0].prompt if entries_of else ""
                texts[key] = {
                    "prompt": prompt,
                    "runs": [_run_text(loaded, s, question.options, column, prompt) for s in entries_of],
                }
        name = data_file(task, taken)
        payload = {
            "task": task,
            "label": variant_label(task),
            "runs": task_runs,
            "questions": entries,
            "texts": texts,
        }
        files[name] = f"window.M1Questions=window.M1Questions||{{}};window.M1Questions[{_js(task)}]={_js(payload)};\n"
        tasks.append(
            {
                "task": task,
                "label": variant_label(task),
                "file": name,
                "questions": len(entries),
                "kept": len(texts),
                "changed": int(changed),
                "runs": len(task_runs),
            }
        )
    page = {
        "runs": [
            {
                "index": index,
                "label": labels[index],
                "model": short_model_name(runs[index].model_name),
                "budget": None if runs[index].budget is None else str(runs[index].budget),
                "ignore": runs[index].ignore,
            }
            for index in order
        ],
        "tasks": tasks,
        "limit": limit,
        "page_size": PAGE_SIZE,
        "verdicts": VERDICT_TEXT,
        "rules": RULE_TEXT,
        "marker": ANSWER_MARKER,
    }
    if any(result.repeats > 1 for run in runs for result in run.tasks.values()):
        page["repeats"] = True  # K samples per question in some run: the list's "partly right" verdict and filter
        page["verdicts"] = {**VERDICT_TEXT, PARTLY: PARTLY_TEXT}
    return page, files


def _run_text(
    loaded: Loaded, sample: BrowserSample, options: Sequence[tuple[str, str]], column: dict[int, int], prompt: str
) -> dict[str, Any]:
    """One run's texts and verdict of a question (its prompt only where it differs from the first run's)."""
    result = loaded.runs[sample.run].tasks.get(sample.task)
    view = verdict_view(sample, result.version if result is not None else None)
    verdict = verdict_code(sample.acc, sample.no_answer)
    return {
        "run": sample.run,
        "c": column[sample.run],
        "v": verdict,
        "thinking": sample.thinking,
        "answer": sample.answer,
        "extracted": view["extracted"],
        "letter": _letter(view["extracted"], options),
        "rule": view["rule"],
        "rule_text": view["rule_text"],
        "raw": view["raw_extracted"],
        "disagrees": view["disagrees"],
        "where": f"{sample.path.name}:{sample.line}",
        **({"prompt": sample.prompt} if sample.prompt != prompt else {}),
        **(_repeats_view(sample, options) if sample.repeats > 1 else {}),
    }


def _repeats_view(sample: BrowserSample, options: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A K-sample row (lm-eval's repeats): K (``k``), how many the file counts right (``right``: acc x K), and
    every sample's verdict by the m1 scorer, ``[code, option letter or extraction]`` (``samples``; the texts shown
    are sample 1's)."""
    verdicts = [sample.verdict, *(sample.others or [])]
    shown = []
    for verdict in verdicts:
        if verdict is None or not verdict.scored:
            shown.append([NO_SCORE, "–"])
            continue
        code = RIGHT if verdict.correct else NO_ANSWER if verdict.no_answer else WRONG
        shown.append([code, _letter(verdict.extracted, options) or verdict.extracted or "–"])
    return {"k": sample.repeats, "right": round(sample.acc * sample.repeats), "samples": shown}


def _js(value: Any) -> str:
    """JSON as a JavaScript literal in a file of its own (``<`` escaped all the same, and the two line separators
    that older engines refuse in strings)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def page_json(page: dict[str, Any]) -> str:
    """The page's JSON for ``<script type="application/json">`` (nothing in it can end the element)."""
    text = json.dumps(page, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
