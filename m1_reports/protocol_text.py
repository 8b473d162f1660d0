"""The protocol header as Markdown (top of ``table1.md``, ``protocol.md``) and as a frame (``protocol.csv``)."""

from __future__ import annotations

import pandas as pd

from m1_reports.counts import COUNT_MARK
from m1_reports.formatting import markdown_text
from m1_reports.protocol import FIELDS, INFO
from m1_reports.protocol_header import ProtocolHeader
from m1_reports.tables_text import markdown_table

FLAG_MARK = "⚠"


def protocol_markdown(header: ProtocolHeader) -> str:
    rows = header.rows()
    lines = [
        "# Protocol",
        "",
        f"The paper's protocol: {header.paper.text}. {FLAG_MARK}: differs from it.",
        "",
    ]
    if rows:
        body = []
        for row in rows:
            cells = [row["run"], row["model_type"] or "–"]
            for key, _ in FIELDS:
                text = row["cells"][key]
                cells.append(f"{FLAG_MARK} {text}" if key in row["flagged"] else text)
            body.append(cells)
        headers = ["run", "lm-eval model", *(label for _, label in FIELDS)]
        lines.append(markdown_table(headers, body, "l" * len(headers)))
    flagged = [row for row in rows if row["flags"]]
    if flagged:
        lines += ["Differences from the paper's protocol:", ""]
        for row in flagged:
            for flag in row["flags"]:
                lines.append(
                    f"- {markdown_text(row['run'])}: {markdown_text(flag.message)}"
                    + (" (note)" if flag.level == INFO else "")
                )
        lines.append("")
    if header.differences:
        lines += ["The compared runs differ in:", ""]
        for difference in header.differences:
            values = "; ".join(f"{run}: {text}" for run, text in difference.values.items())
            lines.append(f"- {markdown_text(difference.label)}: {markdown_text(values)}")
        lines.append("")
    if header.forcing_note:
        lines += [markdown_text(header.forcing_note), ""]
    if header.counts:
        lines += [f"{COUNT_MARK} Document counts that differ from the paper's (marked {COUNT_MARK} in Table 1):", ""]
        for row in rows:
            if row["counts"]:
                lines.append(f"- {markdown_text(row['run'])}: {markdown_text('; '.join(row['counts']))}")
        lines.append("")
    if header.reference_notes:
        lines += ["Published rows, their own protocol:", ""]
        lines += [
            f"- {markdown_text(', '.join(names))}: {markdown_text(note)}"
            for names, note in header.grouped_reference_notes()
        ]
        lines.append("")
    return "\n".join(lines)


def protocol_frame(header: ProtocolHeader) -> pd.DataFrame:
    """protocol.csv: one row per run, every header field, the fields that differ from the paper, the flags and
    the document-count notes."""
    records = []
    for row in header.rows():
        record: dict[str, object] = {"run": row["run"], "model": row["model"], "lm_eval_model": row["model_type"]}
        for key, _ in FIELDS:
            record[key] = row["cells"][key]
        record["lm_eval_seeds"] = row["lm_eval_seeds"]
        record["differs_from_paper"] = ",".join(key for key, _ in FIELDS if key in row["noted"])
        record["flags"] = " | ".join(flag.message for flag in row["flags"])
        record["count_notes"] = " | ".join(row["counts"])
        records.append(record)
    columns = ["run", "model", "lm_eval_model", *(key for key, _ in FIELDS), "lm_eval_seeds", "differs_from_paper",
               "flags", "count_notes"]  # fmt: skip
    return pd.DataFrame(records, columns=columns)
