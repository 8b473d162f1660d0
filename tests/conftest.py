"""Shared fixtures: the tiny model (built once, cached) and one engine of each backend per test session (the
m1-vllm engine, a vLLM OpenAI server for m1-server, the m1-hf model), each started at its first use.

Plain helpers (paths, running ``lm_eval``, writing small tasks) are in ``tests/helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def clean_m1_env(monkeypatch):
    """No M1_EVAL_DATA / M1_PROMPT from the caller's environment."""
    from m1_tasks import data, prompt

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.delenv(prompt.PROMPT_ENV, raising=False)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    from m1_eval.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def vllm_lm(tiny_model):
    """The one in-process m1-vllm engine of the session (vLLM start-up costs ~25 s on CPU)."""
    from m1_models.vllm_model import M1VLLM

    lm = M1VLLM(pretrained=str(tiny_model), max_model_len=2048)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def vllm_server(tiny_model, tmp_path_factory):
    """The one real vLLM OpenAI server of the session (tiny model, float32 like ``vllm_lm``), for m1-server."""
    from tests.helpers import VLLMServer

    server = VLLMServer(tiny_model, tmp_path_factory.mktemp("vllm_server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hf_lm(tiny_model):
    """The one m1-hf model of the session (transformers, float32 on CPU, one torch thread)."""
    import torch

    from m1_models.hf_model import M1HF

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's matrices are too small for a second thread to pay off
    lm = M1HF(pretrained=str(tiny_model), max_model_len=2048, device="cpu", batch_size=16)
    yield lm
    lm.close()
    torch.set_num_threads(threads)
