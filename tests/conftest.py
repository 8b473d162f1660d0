"""Shared fixtures: the tiny model (built once, cached) and one vLLM engine per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("M1_SHARED_DATA", REPO.parent / "shared" / "m1-data"))
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from m1_models.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def vllm_lm(tiny_model):
    """The one in-process m1-vllm engine of the session (vLLM start-up costs ~25 s on CPU)."""
    from m1_models.vllm_model import M1VLLM

    lm = M1VLLM(pretrained=str(tiny_model), max_model_len=2048)
    yield lm
    lm.close()


def run_lm_eval(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """The plain ``lm_eval`` command in a subprocess (no --include_path unless the test passes one)."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(
        [LM_EVAL, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
