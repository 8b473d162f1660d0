"""Every CSV file of the report, in one place: the frames of ``table1.csv``, ``protocol.csv`` and
``leaderboard.csv`` (the other CSV files are the tables' own frames), and the one way a frame becomes CSV text
(:func:`csv_text`): no index, ``\n`` line ends, and every text cell defused for spreadsheets (:func:`csv_cell`).

Accuracies are percentages in ``table1.csv`` (as the paper shows them) and fractions elsewhere (as lm-eval writes
them).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from m1_reports.columns import order_tasks
from m1_reports.deviations import ProtocolHeader
from m1_reports.naming import format_gen_kwargs
from m1_reports.table1 import Table1

#: the K-sample runs' maj@k and pass@k (:func:`m1_reports.tables.parallel_samples_table`)
PARALLEL_SAMPLES_FILE = "parallel_samples.csv"

# A spreadsheet reads a cell that starts with one of these as a formula (OWASP's "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell of a CSV file, defused for spreadsheets: a text starting with ``= + - @``, a tab or a carriage
    return gets a leading ``'`` (the OWASP rule); numbers and other values are returned as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell and column name defused for spreadsheets (:func:`csv_cell`); numeric and
    boolean columns are left as they are."""
    renamed = {column: csv_cell(column) for column in frame.columns if csv_cell(column) != column}
    safe = frame.rename(columns=renamed) if renamed else frame
    for position in range(safe.shape[1]):
        series = safe.iloc[:, position]
        if is_numeric_dtype(series.dtype) or is_bool_dtype(series.dtype):
            continue
        cells = series.astype(object)
        if cells.map(lambda value: csv_cell(value) is not value).any():
            safe = safe.copy() if safe is frame else safe
            safe.isetitem(position, cells.map(csv_cell))
    return safe


def csv_text(frame: pd.DataFrame) -> str:
    """A frame as the text of a CSV file: no index, ``\n`` line ends, every text cell defused (:func:`csv_safe`)."""
    return csv_safe(frame).to_csv(index=False, lineterminator="\n")


# ----------------------------------------------------------------------------------------------- the frames


def table1_frame(table: Table1) -> pd.DataFrame:
    """table1.csv: one row per model, for every column its value, CI bounds, n, best flag and delta (percent)."""
    records = []
    for row, source in zip(table.rows, table.sources, strict=True):
        record: dict[str, Any] = {"model": row, "source": source, "baseline": row == table.baseline}
        for column in table.columns:
            record[column] = round(100 * table.at("value", row, column), 4)
            record[f"{column}_ci_low"] = round(100 * table.at("low", row, column), 4)
            record[f"{column}_ci_high"] = round(100 * table.at("high", row, column), 4)
            n = table.at("n", row, column)
            record[f"{column}_n"] = int(n) if not math.isnan(n) else None
            note = table.counts.get((row, column))
            record[f"{column}_n_paper"] = note.paper if note is not None else None
            record[f"{column}_count_note"] = table.count_note(row, column) or None
            record[f"{column}_best"] = bool(table.at("best", row, column))
            if table.delta is not None:
                record[f"{column}_delta"] = round(100 * table.at("delta", row, column), 4)
        records.append(record)
    return pd.DataFrame(records)


def protocol_frame(header: ProtocolHeader) -> pd.DataFrame:
    """protocol.csv: one row per run, every header field, the fields that differ from the paper, the flags and
    the document-count notes."""
    records = []
    for row in header.rows():
        record: dict[str, object] = {"run": row["run"], "model": row["model"], "lm_eval_model": row["model_type"]}
        for key, _ in header.fields:
            record[key] = row["cells"][key]
        record["lm_eval_seeds"] = row["lm_eval_seeds"]
        record["differs_from_paper"] = ",".join(key for key, _ in header.fields if key in row["noted"])
        record["flags"] = " | ".join(flag.message for flag in row["flags"])
        record["count_notes"] = " | ".join(row["counts"])
        records.append(record)
    columns = ["run", "model", "lm_eval_model", *(key for key, _ in header.fields), "lm_eval_seeds",
               "differs_from_paper", "flags", "count_notes"]  # fmt: skip
    return pd.DataFrame(records, columns=columns)


def leaderboard_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """leaderboard.csv: the leaderboard rows (:func:`m1_reports.tables.leaderboard_rows`) flat, one column per
    task and value."""
    tasks = order_tasks({task for row in rows for task in row["tasks"]})
    records = []
    for row in rows:
        record = {
            "run": row["run"],
            "model": row["model"],
            "revision": row["revision"],
            "gen_kwargs": format_gen_kwargs(row["gen_kwargs"]),
            "max_tokens_thinking": row["max_tokens_thinking"],
            "thinking_n_ignore": row["thinking_n_ignore"],
            "n": row["n"],
            "avg_table1": row["avg_table1"],
            "avg_table1_benchmarks": row["avg_table1_benchmarks"],
        }
        for task in tasks:
            values = row["tasks"].get(task, {})
            record[f"{task}_acc"] = values.get("acc")
            record[f"{task}_acc_stderr"] = values.get("acc_stderr")
            record[f"{task}_n"] = values.get("n")
        record["lm_eval_version"] = row["lm_eval_version"]
        record["date"] = row["date"]
        records.append(record)
    frame = pd.DataFrame(records)
    for column in [c for c in frame.columns if c == "n" or c.endswith("_n")]:
        frame[column] = frame[column].astype("Int64")
    return frame
