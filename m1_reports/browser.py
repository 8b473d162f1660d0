"""The sample browser's samples (``samples.html``): the wrong and unanswered samples a report keeps while the
samples files stream by, their texts laid out for display, and the m1 scorer's verdict on each.

:func:`sample_keeper` is what :func:`m1_reports.streams.read_samples` hands the rows it keeps (the first
``--browser-limit`` wrong or unanswered ones per run and task); :func:`attach_verdicts` asks the scorer
(:mod:`m1_reports.rescoring`); :func:`browser_tasks` is the page's content, which :mod:`m1_reports.html` renders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m1_models.settings import PRESETS
from m1_reports.columns import benchmark, order_tasks
from m1_reports.rescoring import NOT_RESCORED, RULE_TEXT, Rescored, not_an_m1_task, rescore
from m1_reports.suite import is_m1_task, scores_with_marker, version_number
from m1_tasks.scoring import ANSWER_MARKER

if TYPE_CHECKING:
    from m1_reports.frames import Loaded
    from m1_reports.reading import RunInfo
    from m1_reports.streams import SampleKeeper

# The budget-forcing presets' thinking starts (longest first), stripped from the thinking shown in the browser.
THINK_STARTS = tuple(
    sorted({str(p["thinking_start"]) for p in PRESETS.values() if p.get("thinking_start")}, key=len, reverse=True)
)


def first_text(value: Any) -> str:
    """The first string inside lm-eval's (possibly nested) ``resps`` / ``filtered_resps`` lists."""
    while isinstance(value, list | tuple):
        if not value:
            return ""
        value = value[0]
    return "" if value is None else str(value)


def prompt_of(row: Mapping[str, Any]) -> str:
    arguments = row.get("arguments")
    if isinstance(arguments, Mapping):
        first = arguments.get("gen_args_0")
        if isinstance(first, Mapping):
            return str(first.get("arg_0", ""))
    if isinstance(arguments, list) and arguments:
        return first_text(arguments[0])
    return ""


def display_parts(text: str) -> tuple[str, str]:
    """(thinking, answer) of a response, for display only: split on the scorer's ``ANSWER_MARKER`` (the last
    one), the thinking start and the newlines after the markers left out; no marker means no thinking.

    What is *scored* is the scorer's business (:mod:`m1_reports.rescoring` asks it); this only lays out text.
    """
    index = text.rfind(ANSWER_MARKER)
    if index < 0:
        return "", text
    thinking = text[:index]
    for start in THINK_STARTS:
        if thinking.startswith(start):
            thinking = thinking[len(start) :]
            break
    return thinking.lstrip("\n"), text[index + len(ANSWER_MARKER) :].lstrip("\n")


@dataclass
class BrowserSample:
    """A wrong or unanswered sample, with its texts, for the HTML sample browser."""

    run: int
    task: str
    doc_id: Any
    path: Path
    line: int
    target: str
    prompt: str
    thinking: str  # display_parts of the raw response (resps)
    answer: str
    scored_text: str  # what lm-eval scored: filtered_resps (else resps)
    doc: Any  # the samples file's doc, for the scorer
    acc: float
    acc_strict: float
    no_answer: float
    verdict: Rescored | None = None  # the m1 scorer's extraction and rule (m1_reports.rescoring)

    @property
    def unanswered(self) -> bool:
        return self.no_answer > 0


def sample_keeper(kept: list[BrowserSample], *, run: int, task: str, path: Path) -> SampleKeeper:
    """What :func:`m1_reports.streams.read_samples` calls with each row it keeps for the browser: the row becomes
    a :class:`BrowserSample` appended to ``kept``."""

    def keep(line: int, row: Mapping[str, Any], acc: float, acc_strict: float, no_answer: float) -> None:
        response = first_text(row.get("resps"))
        filtered = row.get("filtered_resps")
        thinking, answer = display_parts(response)
        kept.append(
            BrowserSample(
                run=run,
                task=task,
                doc_id=row["doc_id"],
                path=path,
                line=line,
                target=str(row.get("target", "")),
                prompt=prompt_of(row),
                thinking=thinking,
                answer=answer,
                scored_text=first_text(filtered) if filtered is not None else response,
                doc=row.get("doc"),
                acc=acc,
                acc_strict=acc_strict,
                no_answer=no_answer,
            )
        )

    return keep


def attach_verdicts(browser: Sequence[BrowserSample], runs: Sequence[RunInfo]) -> None:
    """The m1 scorer's extraction and rule for every sample the browser shows (only those are re-scored)."""
    for sample in browser:
        result = runs[sample.run].tasks.get(sample.task)
        if is_m1_task(sample.task, result):
            sample.verdict = rescore(sample.scored_text, sample.doc)
        else:
            sample.verdict = not_an_m1_task(sample.task)


# ------------------------------------------------------------------------------------------------ the page


def anchor(task: str) -> str:
    return "task-" + re.sub(r"[^A-Za-z0-9_-]+", "-", task)


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
    file_correct = sample.acc >= 1.0
    if verdict.correct != file_correct:
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


def task_version(loaded: Loaded, sample: BrowserSample) -> Any:
    result = loaded.runs[sample.run].tasks.get(sample.task)
    return result.version if result is not None else None


def browser_tasks(loaded: Loaded) -> list[dict[str, Any]]:
    """samples.html's content: per task, per run, the kept wrong/unanswered samples with their texts and verdicts."""
    samples = loaded.samples
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    if len(samples):
        flagged = (samples["acc"] < 1.0) | (samples["no_answer"] > 0)
        counts = samples.assign(flagged=flagged).groupby(["run", "task"], observed=True)["flagged"].agg(["sum", "size"])
        totals = {(str(run), str(task)): (int(s), int(n)) for (run, task), (s, n) in counts.iterrows()}
    labels = loaded.labels
    by_task: dict[str, dict[int, list[BrowserSample]]] = {}
    for sample in loaded.browser:
        by_task.setdefault(sample.task, {}).setdefault(sample.run, []).append(sample)
    tasks = []
    for task in order_tasks(by_task):
        runs = []
        for run_index in sorted(by_task[task]):
            label = labels[run_index]
            items = []
            for s in by_task[task][run_index]:
                unanswered = s.unanswered
                items.append(
                    {
                        "kind": "unanswered" if unanswered else "wrong",
                        "kind_text": "no answer" if unanswered else "wrong",
                        "doc_id": str(s.doc_id),
                        "target": s.target,
                        **verdict_view(s, task_version(loaded, s)),
                        "where": f"{s.path.name}:{s.line}",
                        "prompt": s.prompt,
                        "thinking": s.thinking or "(none)",
                        "thinking_chars": len(s.thinking),
                        "answer": s.answer,
                    }
                )
            flagged, size = totals.get((label, task), (len(items), len(items)))
            runs.append({"run": label, "entries": items, "shown": len(items), "total": flagged, "samples": size})
        tasks.append({"anchor": anchor(task), "label": benchmark(task).label, "runs": runs})
    return tasks
