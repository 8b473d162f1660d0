"""Deviations: every run's :class:`~m1_reports.protocol.Protocol` compared with the paper's protocol and with the
other runs (the report's protocol header), grouped so that each is stated once with the runs it applies to.

:func:`compare` flags what differs from :func:`~m1_reports.reference.paper_protocol` (greedy, seed 42, 2048 new
tokens for the baselines, 1024 answer tokens, chat template, plain prompt, m1's scorer) and what differs between
the compared runs.  A flag that can move a score is a warning (:data:`~m1_reports.protocol.WARN`: temperature, a
seed under sampling, token caps, chat template, prompt, scorer version; document counts are their own list); one
that cannot is a note (:data:`~m1_reports.protocol.INFO`: another seed under greedy decoding).  What a sweep varies
(:data:`~m1_reports.protocol.AXES`: thinking budget, ignore rounds) is the sweep's axes, never a difference: runs
that differ only in those share one row of the protocol table (:meth:`ProtocolHeader.grouped_rows`).

Rendering is the renderers' job (:mod:`m1_reports.render_text`, :mod:`m1_reports.render_csv`,
:mod:`m1_reports.render_html`, :mod:`m1_reports.console`); they read the groups, :meth:`ProtocolHeader.rows` (one
per run, ``protocol.csv``) and the flags.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from m1_reports.columns import benchmark
from m1_reports.document_counts import CountNote
from m1_reports.join import Loaded
from m1_reports.protocol import (
    AXES,
    FIELD_LABELS,
    FIELDS,
    INFO,
    SAMPLES_FIELD,
    WARN,
    Protocol,
    TaskSettings,
    run_protocol,
    summarize,
    temperature_text,
)
from m1_reports.reference import PaperProtocol, paper_protocol, reference_notes
from m1_reports.suite import scores_with_marker
from m1_tasks.prompt import COT

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Flag:
    """A difference of one run from the paper's protocol."""

    run: str
    field: str  # a FIELDS key
    message: str
    level: str = WARN  # WARN: moves accuracy or comparability; INFO: worth knowing


@dataclass(frozen=True)
class Difference:
    """A protocol field (not a sweep axis) on which the compared runs differ."""

    field: str
    values: dict[str, str]  # run -> display text

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)

    def groups(self) -> list[tuple[str, list[str]]]:
        """(value, runs with it), in the order the values first appear."""
        grouped: dict[str, list[str]] = {}
        for run, text in self.values.items():
            grouped.setdefault(text, []).append(run)
        return list(grouped.items())


@dataclass(frozen=True)
class DeviationGroup:
    """One difference from the paper's protocol, stated once, with the runs it applies to."""

    field: str
    level: str
    message: str
    runs: list[str]


@dataclass(frozen=True)
class ProtocolRow:
    """A row of the protocol table: runs whose protocols are the same apart from the sweep's axes."""

    runs: list[str]
    model_type: str
    cells: dict[str, str]  # FIELDS key -> text (the axes: every value the runs have)
    flagged: set[str]  # FIELDS keys with a warning
    noted: set[str]  # FIELDS keys with a warning or a note


@dataclass(frozen=True)
class CountGroup:
    """Document counts that differ from the paper's, the same for these runs."""

    runs: list[str]
    lines: list[str]


def _tasks_of(settings: list[TaskSettings], all_tasks: int) -> str:
    if len(settings) == all_tasks:
        return ""
    return " (" + ", ".join(benchmark(t.task).label for t in settings) + ")"


def paper_flags(protocol: Protocol, paper: PaperProtocol) -> list[Flag]:
    """What differs from the paper's protocol, one flag per field."""
    flags: list[Flag] = []
    tasks = list(protocol.tasks.values())
    n = len(tasks)
    run = protocol.run

    def flag(field_name: str, message: str, level: str = WARN) -> None:
        flags.append(Flag(run, field_name, message, level))

    sampled = [t for t in tasks if not t.greedy]
    if sampled:
        shown = summarize({t.task: temperature_text(t) for t in sampled})
        flag("temperature", f"temperature {shown}{_tasks_of(sampled, n)} instead of the paper's greedy decoding")
    if protocol.seed is not None and protocol.seed != paper.seed:
        if sampled:
            flag("seed", f"seed {protocol.seed} ({protocol.seed_origin}) instead of the paper's {paper.seed}")
        else:
            flag("seed", f"seed {protocol.seed} ({protocol.seed_origin}) instead of the paper's {paper.seed}: no "
                 "effect under greedy decoding", INFO)  # fmt: skip
    elif protocol.seed is None and sampled:
        flag("seed", f"sampling seed unknown ({protocol.seed_origin}); the paper's is {paper.seed}")
    unforced = [t for t in tasks if not t.forced and t.max_gen_toks != paper.max_gen_toks]
    if unforced:
        values = sorted({t.max_gen_toks for t in unforced})
        flag("max_tokens", f"max_gen_toks {', '.join(map(str, values))}{_tasks_of(unforced, n)} instead of the "
             f"{paper.max_gen_toks} new tokens of the paper's baselines")  # fmt: skip
    answers = [t for t in tasks if t.forced and t.max_tokens_answer != paper.max_tokens_answer]
    if answers:
        values = sorted({str(t.max_tokens_answer) for t in answers})
        flag("max_tokens", f"{', '.join(values)} answer tokens{_tasks_of(answers, n)} instead of the paper's "
             f"{paper.max_tokens_answer}")  # fmt: skip
    if paper.chat_template and protocol.chat_template is False:
        flag("chat_template", "no chat template (lm_eval ran without --apply_chat_template); the paper applies the "
             "model's chat template")  # fmt: skip
    cot = [t for t in tasks if t.m1 and t.prompt == COT]
    if cot:
        flag("prompt", f"the +CoT prompt{_tasks_of(cot, n)} (\"Let's think step by step.\") instead of the plain "
             "prompt: compare with the paper's +CoT rows")  # fmt: skip
    repeated = [t for t in tasks if t.repeats > 1]
    if repeated:
        shown = summarize({t.task: str(t.repeats) for t in repeated})
        what = (f"{shown} samples per question{_tasks_of(repeated, n)} (lm-eval repeats; Table 1 shows acc, their "
                "mean; maj@k and pass@k in the parallel-samples table) instead of the paper's one answer per question")
        if any(not t.greedy for t in repeated):
            flag("samples", what)
        else:
            flag("samples", what + ": greedy, the samples are one answer", INFO)
    old = [t for t in tasks if t.m1 and not scores_with_marker(t.version)]
    if old:
        versions = sorted({str(t.raw_version) for t in old})
        flag("scorer", f"scored by an older m1-eval scorer (task version {', '.join(versions)}: the answer marker "
             f"cut off){_tasks_of(old, n)}; re-score or re-run")  # fmt: skip
    return flags


def header_fields(protocols: Sequence[Protocol]) -> list[tuple[str, str]]:
    """The header's fields (key, label): :data:`~m1_reports.protocol.FIELDS`, and after the temperature the
    samples per question (:data:`~m1_reports.protocol.SAMPLES_FIELD`) when a run has more than one."""
    fields = list(FIELDS)
    if any(p.repeats > 1 for p in protocols):
        fields.insert([key for key, _ in fields].index("temperature") + 1, SAMPLES_FIELD)
    return fields


def run_differences(protocols: Sequence[Protocol]) -> list[Difference]:
    """The header fields whose text differs between the runs, apart from the sweep's axes (nothing with a single
    run); the token caps are compared by their shape (:meth:`~m1_reports.protocol.Protocol.series_display`)."""
    if len(protocols) < 2:
        return []
    samples = any(p.repeats > 1 for p in protocols)
    shown = {p.run: p.series_display(samples) for p in protocols}
    differences = []
    for key, _ in header_fields(protocols):
        if key in AXES:
            continue
        values = {run: cells[key] for run, cells in shown.items()}
        if len(set(values.values())) > 1:
            differences.append(Difference(key, values))
    return differences


@dataclass
class ProtocolHeader:
    """Everything the report's header states: each run's protocol, its flags, the differences between runs,
    the document counts that differ from the paper's, and the published rows' own protocol notes."""

    protocols: list[Protocol]
    flags: list[Flag]
    differences: list[Difference]
    paper: PaperProtocol
    counts: list[CountNote] = field(default_factory=list)
    reference_notes: dict[str, list[str]] = field(default_factory=dict)  # published row -> notes

    @property
    def forcing_note(self) -> str:
        """Said once when any run is budget-forced."""
        return self.paper.forcing_note if any(p.forced for p in self.protocols) else ""

    def grouped_reference_notes(self) -> list[tuple[list[str], str]]:
        """(published rows, note): rows sharing a note listed together, in the table's order."""
        grouped: dict[str, list[str]] = {}
        for name, notes in self.reference_notes.items():
            for note in notes:
                grouped.setdefault(note, []).append(name)
        return [(names, note) for note, names in grouped.items()]

    @property
    def runs(self) -> list[str]:
        return [p.run for p in self.protocols]

    @property
    def samples(self) -> bool:
        """Whether a run has more than one sample per question (the header then shows them for every run)."""
        return any(p.repeats > 1 for p in self.protocols)

    @property
    def fields(self) -> list[tuple[str, str]]:
        """The header's columns (key, label), in order (:func:`header_fields`): what every renderer shows."""
        return header_fields(self.protocols)

    def runs_text(self, runs: Sequence[str]) -> str:
        """``all 10 runs``, or the runs' labels."""
        if len(runs) > 1 and len(runs) == len(self.protocols):
            return f"all {len(runs)} runs" if len(runs) > 2 else "both runs"
        return "; ".join(runs)

    def deviation_groups(self) -> list[DeviationGroup]:
        """Every difference from the paper's protocol once, with its runs: warnings first, then notes; each in the
        order of the header's fields."""
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for flag in self.flags:
            grouped.setdefault((flag.field, flag.level, flag.message), []).append(flag.run)
        order = {key: i for i, (key, _) in enumerate(self.fields)}
        groups = [DeviationGroup(f, level, message, runs) for (f, level, message), runs in grouped.items()]
        return sorted(groups, key=lambda g: (g.level != WARN, order.get(g.field, len(order))))

    def count_groups(self) -> list[CountGroup]:
        """The document counts that differ from the paper's, each run set once with its lines."""
        by_line: dict[str, list[str]] = {}
        for note in self.counts:
            by_line.setdefault(note.line, []).append(note.run)
        grouped: dict[tuple[str, ...], list[str]] = {}
        for line, runs in by_line.items():
            grouped.setdefault(tuple(runs), []).append(line)
        return [CountGroup(list(runs), lines) for runs, lines in grouped.items()]

    def axes(self) -> list[tuple[str, list[str]]]:
        """The sweep's axes: (label, every value) of each :data:`AXES` field that varies between runs whose
        protocols are otherwise the same (a row of :meth:`grouped_rows` with more than one run); none without a
        sweep."""
        found = []
        for key in AXES:
            varied = [
                p.display()[key]
                for row in self.grouped_rows()
                if len(row.runs) > 1
                for p in self.protocols
                if p.run in row.runs
            ]
            values = list(dict.fromkeys(varied))
            if len(values) > 1:
                found.append((FIELD_LABELS[key], sorted(values, key=_axis_order)))
        return found

    def grouped_rows(self) -> list[ProtocolRow]:
        """The protocol table: one row per set of runs whose protocols are the same apart from the sweep's axes
        (the axes' cells list every value of the row's runs)."""
        groups: dict[tuple[str, ...], list[Protocol]] = {}
        samples = self.samples
        for protocol in self.protocols:
            key = (protocol.model_type or "", *protocol.series_display(samples).values())
            groups.setdefault(key, []).append(protocol)
        rows = []
        for members in groups.values():
            first = members[0]
            cells = first.display(samples)
            cells.update(first.series_display(samples))
            for key in AXES:
                cells[key] = ", ".join(sorted(dict.fromkeys(p.display()[key] for p in members), key=_axis_order))
            runs = [p.run for p in members]
            flags = [f for f in self.flags if f.run in runs]
            rows.append(
                ProtocolRow(
                    runs=runs,
                    model_type=first.model_type or "",
                    cells=cells,
                    flagged={f.field for f in flags if f.level == WARN},
                    noted={f.field for f in flags},
                )
            )
        return rows

    def flags_of(self, run: str) -> list[Flag]:
        return [f for f in self.flags if f.run == run]

    def counts_of(self, run: str) -> list[CountNote]:
        return [c for c in self.counts if c.run == run]

    def rows(self) -> list[dict[str, Any]]:
        """One row per run: ``run``, ``model``, ``cells`` (FIELDS key -> text), ``flagged`` (keys that differ
        from the paper), ``flags``, ``counts`` (count note lines)."""
        rows = []
        for protocol in self.protocols:
            flags = self.flags_of(protocol.run)
            rows.append(
                {
                    "run": protocol.run,
                    "model": protocol.model,
                    "model_type": protocol.model_type or "",
                    "cells": protocol.display(self.samples),
                    "flagged": {f.field for f in flags if f.level == WARN},
                    "noted": {f.field for f in flags},
                    "flags": flags,
                    "counts": [c.line for c in self.counts_of(protocol.run)],
                    "lm_eval_seeds": protocol.lm_eval_seeds_text(),
                }
            )
        return rows


def _axis_order(text: str) -> tuple[int, float, str]:
    """Axis values in numeric order (``4, 8, 16``), words (``none (no forcing)``) first."""
    head = text.split(" ", 1)[0]
    try:
        return (1, float(head), text)
    except ValueError:
        return (0, 0.0, text)


def compare(
    loaded: Loaded, counts: Sequence[CountNote] = (), references: Sequence[str] = ()
) -> ProtocolHeader:
    """The header of a report: every run's :class:`Protocol`, compared with the paper's and with each other."""
    paper = paper_protocol()
    variants: dict[int, dict[str, str | None]] = {}
    schedules: dict[int, list[str]] = {}
    for summary in loaded.sample_files:
        variants.setdefault(summary.run, {})[summary.task] = summary.prompt_variant
        if summary.schedule:
            schedules.setdefault(summary.run, []).append(summary.schedule)
    protocols = [
        run_protocol(run, variants.get(index, {}), schedules.get(index, [])) for index, run in enumerate(loaded.runs)
    ]
    flags = [flag for protocol in protocols for flag in paper_flags(protocol, paper)]
    for flag in flags:
        if flag.field == "scorer":
            logger.warning("%s: %s", flag.run, flag.message)
    notes = {name: reference_notes(name) for name in references}
    return ProtocolHeader(
        protocols=protocols,
        flags=flags,
        differences=run_differences(protocols),
        paper=paper,
        counts=list(counts),
        reference_notes={name: text for name, text in notes.items() if text},
    )
