"""Per-sample generation records of the m1 models, written next to lm-eval's samples files.

The models add one record per request to :data:`SINK` (keyed by lm-eval task name); when lm-eval's
``EvaluationTracker`` saves ``samples_<task>_<date>.jsonl``, the start-up hook calls
:func:`write_records_for_task`, which writes ``m1_generations_<task>_<date>.jsonl`` in the same folder
(atomically: a temporary file renamed into place).  Reports join them to the samples on
(task, doc_id, prompt_hash).

Standard library only: the start-up hook imports this module inside lm-eval's process.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD_FILE_PREFIX = "m1_generations_"


class RecordSink:
    """Thread-safe store of records per task, filled by the models and drained by the writer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._by_task[str(record["task"])].append(record)

    def pop(self, task: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._by_task.pop(task, [])

    def clear(self) -> None:
        with self._lock:
            self._by_task.clear()


SINK = RecordSink()


def samples_dir(tracker: Any) -> Path | None:
    """The folder lm-eval's tracker writes samples into (same rule as its ``save_results_samples``)."""
    if not getattr(tracker, "output_path", None):
        return None
    path = Path(tracker.output_path)
    if path.suffix == ".json":
        return path.parent
    return path / str(tracker.general_config_tracker.model_name_sanitized)


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` as JSON lines to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in sorted(records, key=lambda r: (r.get("doc_id", 0), r.get("prompt_hash", ""))):
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_records_for_task(tracker: Any, task_name: str) -> Path | None:
    records = SINK.pop(task_name)
    folder = samples_dir(tracker)
    if not records or folder is None:
        return None
    path = write_records(folder / f"{RECORD_FILE_PREFIX}{task_name}_{tracker.date_id}.jsonl", records)
    logger.info("m1-eval: wrote %d generation records to %s", len(records), path)
    return path
