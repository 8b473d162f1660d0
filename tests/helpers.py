"""Helpers the tests import: paths, the shared m1 data, running the plain ``lm_eval`` command, small files.

(Fixtures live in ``conftest.py``, which pytest loads itself; tests import plain helpers from here.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M1_SHARED_DATA", REPO.parent / "shared" / "m1-data"))
PARTIAL = SHARED_DATA / "m1_eval_data.partial.json"
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))

needs_partial = pytest.mark.skipif(
    not PARTIAL.is_file(), reason=f"shared m1 data not found at {PARTIAL} (set M1_SHARED_DATA to its folder)"
)


def run_lm_eval(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """The plain ``lm_eval`` command in a subprocess (no --include_path unless the test passes one)."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([LM_EVAL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_local_task(folder: Path, task: str, prompts: list[str], generation_kwargs: dict) -> Path:
    """A small lm-eval task of our own (a JSON-lines file and its YAML) for ``--include_path``."""
    data = folder / f"{task}.jsonl"
    with data.open("w") as handle:
        for i, prompt in enumerate(prompts):
            handle.write(json.dumps({"id": i, "prompt": prompt, "answer": "A"}) + "\n")
    yaml = "\n".join(
        [
            f"task: {task}",
            "dataset_path: json",
            f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(data))}}}}}",
            "test_split: test",
            "output_type: generate_until",
            'doc_to_text: "{{prompt}}\\nReturn your final response within \\\\boxed{}."',
            "doc_to_target: answer",
            f"generation_kwargs: {json.dumps(generation_kwargs)}",
            "metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]",
        ]
    )
    path = folder / f"{task}.yaml"
    path.write_text(yaml + "\n")
    return path
