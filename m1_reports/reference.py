"""The published rows: the m1 paper's Table 1 (and Table 2 ablation), shipped as package data with the citation,
the paper's evaluation protocol and the protocol notes of particular published rows (``data/paper_protocol.json``)."""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

from m1_base.errors import ReportInputError
from m1_reports.columns import AVG, TABLE1_COLUMNS

DATA_FILE = "paper_table1.csv"
META_FILE = "paper_table1.meta.json"
PROTOCOL_FILE = "paper_protocol.json"
DEFAULT_REFERENCES = ("HuatuoGPT-o1-*", "UltraMedical-*", "m1-*")
GROUP_ALIASES = {"table1": "table1", "table2": "table2_data_ablation_7B_budget2048"}


@dataclass(frozen=True)
class Citation:
    title: str
    authors: str
    arxiv: str
    version: str
    url: str
    source: str
    text: str
    bibtex: str

    @property
    def short(self) -> str:
        return f"arXiv {self.arxiv}{self.version}"


def _data(name: str):
    return resources.files("m1_reports").joinpath("data", name)


@cache
def citation() -> Citation:
    meta = json.loads(_data(META_FILE).read_text(encoding="utf-8"))
    return Citation(
        title=meta["title"],
        authors=meta["authors"],
        arxiv=meta["arxiv"],
        version=meta["version"],
        url=meta["url"],
        source=meta["source"],
        text=meta["citation"],
        bibtex=meta["bibtex"],
    )


@cache
def _table() -> pd.DataFrame:
    with _data(DATA_FILE).open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    missing = [c for c in ("model", "group", *TABLE1_COLUMNS, AVG) if c not in frame.columns]
    if missing:  # a packaging mistake, not a user error
        raise RuntimeError(f"{DATA_FILE} lacks columns {missing}")
    return frame


def reference_table() -> pd.DataFrame:
    """The published rows: ``model``, ``group`` and the ten benchmark columns + ``Avg`` as fractions (0..1)."""
    frame = _table().copy()
    for column in (*TABLE1_COLUMNS, AVG):
        frame[column] = frame[column].astype(float) / 100.0
    return frame


def reference_names() -> list[str]:
    return list(_table()["model"])


@dataclass(frozen=True)
class PaperProtocol:
    """How the paper evaluated (what m1-eval's runs are compared against)."""

    temperature: float  # 0: greedy
    seed: int
    max_gen_toks: int  # new tokens of the baselines (no budget forcing)
    max_tokens_answer: int  # answer tokens after the thinking (forced runs)
    chat_template: bool
    prompt: str
    scorer: str
    text: str  # the protocol in one sentence
    source: str
    forcing_note: str  # why forced runs differ from the paper's on purpose


@cache
def _protocol_data() -> dict[str, Any]:
    return json.loads(_data(PROTOCOL_FILE).read_text(encoding="utf-8"))


def paper_protocol() -> PaperProtocol:
    data = _protocol_data()
    protocol = data["protocol"]
    return PaperProtocol(
        temperature=float(protocol["temperature"]),
        seed=int(protocol["seed"]),
        max_gen_toks=int(protocol["max_gen_toks"]),
        max_tokens_answer=int(protocol["max_tokens_answer"]),
        chat_template=bool(protocol["chat_template"]),
        prompt=str(protocol["prompt"]),
        scorer=str(protocol["scorer"]),
        text=str(data["protocol_text"]),
        source=str(data["source"]),
        forcing_note=str(data["forcing_note"]),
    )


def reference_notes(name: str) -> list[str]:
    """The protocol notes of a published row (e.g. HuatuoGPT-o1's own evaluation sampled; the paper re-ran it
    greedy), matched by name pattern or by the row's table."""
    table = _table()
    groups = dict(zip(table["model"], table["group"], strict=True))
    notes = []
    for entry in _protocol_data().get("row_notes", []):
        pattern, group = entry.get("match"), entry.get("group")
        if (pattern and fnmatch.fnmatchcase(name, pattern)) or (group and groups.get(name) == group):
            notes.append(str(entry["note"]))
    return notes


def select_references(patterns: Sequence[str] | None) -> list[str]:
    """Reference model names chosen by ``--reference`` values, in the paper's order.

    A value is a model name (case-insensitive), a shell pattern (``HuatuoGPT-o1-*``), ``table1`` or ``table2``
    (every row of that table), ``all`` or ``none``.  ``None`` selects :data:`DEFAULT_REFERENCES`.
    """
    table = _table()
    names = list(table["model"])
    groups = list(table["group"])
    if patterns is None:
        patterns = DEFAULT_REFERENCES
    chosen: set[str] = set()
    unmatched = []
    for raw in patterns:
        for pattern in (p.strip() for p in str(raw).split(",")):
            if not pattern:
                continue
            lowered = pattern.lower()
            if lowered == "none":
                continue
            if lowered == "all":
                chosen.update(names)
                continue
            if lowered in GROUP_ALIASES:
                chosen.update(n for n, g in zip(names, groups, strict=True) if g == GROUP_ALIASES[lowered])
                continue
            matched = [n for n in names if fnmatch.fnmatchcase(n.lower(), lowered)]
            if not matched:
                unmatched.append(pattern)
            chosen.update(matched)
    if unmatched:
        close = difflib.get_close_matches(unmatched[0], names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see --list-references for the names"
        raise ReportInputError(f"--reference {unmatched[0]!r} matches no row of the paper's tables", hint=hint)
    return [n for n in names if n in chosen]


def resolve_name(name: str, candidates: Iterable[str], what: str = "--baseline") -> str:
    """The candidate ``name`` means: exact, then case-insensitive, then a unique prefix; else a clear error."""
    options = list(candidates)
    if name in options:
        return name
    lowered = name.lower()
    exact = [c for c in options if c.lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    prefixed = [c for c in options if c.lower().startswith(lowered)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise ReportInputError(
            f"{what} {name!r} is ambiguous: {', '.join(prefixed)}", hint="give the full name of one of them"
        )
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.4)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else f"use a run label or a paper row: {', '.join(options[:8])}, ..."
    )
    raise ReportInputError(f"{what} {name!r} is neither a run nor a row of the paper's tables", hint=hint)
