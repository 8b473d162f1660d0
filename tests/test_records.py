"""Generation records: written beside the samples with the samples' document ids, recovered from the cache."""

from __future__ import annotations

from types import SimpleNamespace

from m1_models.records import SINK, record_key, request_hash, write_records_for_task
from tests.conftest import read_jsonl


def tracker(tmp_path):
    return SimpleNamespace(
        output_path=str(tmp_path),
        general_config_tracker=SimpleNamespace(model_name_sanitized="model"),
        date_id="2026-01-01T00-00-00",
    )


def test_records_take_the_samples_document_ids_and_come_back_from_the_cache(tmp_path):
    SINK.clear()
    store: dict = {}
    SINK.attach_store(store)
    try:
        # --samples picked documents 7 and 3 (in that order); the model saw positions 0 and 1
        args7, args3 = ("prompt 7", {"max_tokens_thinking": 64}), ("prompt 3", {"max_tokens_thinking": 64})
        SINK.add({"task": "t", "doc_id": 0, "prompt_hash": "h7", "request_hash": request_hash(*args7),
                  "thinking_tokens": 5})
        SINK.add({"task": "t", "doc_id": 1, "prompt_hash": "h3", "request_hash": request_hash(*args3),
                  "thinking_tokens": 6})
        assert record_key("t", request_hash(*args3)) in store
        samples = [
            {"doc_id": 7, "prompt_hash": "h7", "filter": "a", "arguments": [args7]},
            {"doc_id": 7, "prompt_hash": "h7", "filter": "b", "arguments": [args7]},  # one row per (doc, filter)
            {"doc_id": 3, "prompt_hash": "h3", "filter": "a",  # as lm-eval's tracker rewrites it when saving
             "arguments": {"gen_args_0": {"arg_0": args3[0], "arg_1": args3[1]}}},
        ]
        path = write_records_for_task(tracker(tmp_path), "t", samples)
        assert path == tmp_path / "model" / "m1_generations_t_2026-01-01T00-00-00.jsonl"
        assert [(r["doc_id"], r["thinking_tokens"]) for r in read_jsonl(path)] == [(3, 6), (7, 5)]
        # a resumed run: the requests came from lm-eval's cache, the records from ours
        again = write_records_for_task(tracker(tmp_path / "resumed"), "t", samples)
        assert [(r["doc_id"], r["thinking_tokens"]) for r in read_jsonl(again)] == [(3, 6), (7, 5)]
        # the same prompts at another budget are other requests: no record of the first budget is reused
        other = [{**s, "arguments": [(f"prompt {s['doc_id']}", {"max_tokens_thinking": 128})]} for s in samples]
        assert write_records_for_task(tracker(tmp_path / "other"), "t", other) is None
    finally:
        SINK.attach_store(None)
        SINK.clear()
