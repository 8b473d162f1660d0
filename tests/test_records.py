"""Generation records: written beside the samples with the samples' document ids, recovered from the cache."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from m1_models.records import (
    RECORD_FIELDS,
    SINK,
    make_record,
    record_key,
    repeat_args,
    request_hash,
    write_records_for_task,
)
from tests.helpers import read_jsonl


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


def test_a_resumed_run_recovers_the_record_of_every_repeat(tmp_path):
    """lm-eval's repeats: a sample row holds K responses (``resps: [[r_1, ..., r_K]]``) and each has its record
    under its own request hash; a run resumed from the cache writes all K."""
    SINK.clear()
    store: dict = {}
    SINK.attach_store(store)
    try:
        args = ("prompt 0", {"max_tokens_thinking": 64, "temperature": 0.7})
        for repeat in range(3):
            SINK.add({"task": "t", "doc_id": 0, "prompt_hash": "h0", "repeat": repeat,
                      "request_hash": request_hash(*repeat_args(args, repeat)), "thinking_tokens": 10 + repeat})
        SINK.clear()  # the run died after generating them; a resumed run answers all three from the cache
        samples = [{"doc_id": 0, "prompt_hash": "h0", "filter": "none", "arguments": [args],
                    "resps": [["a", "b", "c"]]}]
        path = write_records_for_task(tracker(tmp_path), "t", samples)
        assert sorted(r["thinking_tokens"] for r in read_jsonl(path)) == [10, 11, 12]
    finally:
        SINK.attach_store(None)
        SINK.clear()


def test_records_join_the_samples_by_lm_evals_doc_hash(tmp_path):
    """A record takes the document id of the sample with its doc_hash and prompt_hash, whatever its position."""
    SINK.clear()
    try:
        SINK.add({"task": "t", "doc_id": 0, "doc_hash": "d3", "prompt_hash": "h3", "request_hash": "r3", "n": 3})
        SINK.add({"task": "t", "doc_id": 1, "doc_hash": "d7", "prompt_hash": "h7", "request_hash": "r7", "n": 7})
        samples = [  # positions would say 0 -> 7 and 1 -> 3: the hashes say otherwise
            {"doc_id": 7, "doc_hash": "d7", "prompt_hash": "h7", "arguments": [("p7", {})]},
            {"doc_id": 3, "doc_hash": "d3", "prompt_hash": "h3", "arguments": [("p3", {})]},
        ]
        path = write_records_for_task(tracker(tmp_path), "t", samples)
        assert [(r["doc_id"], r["n"]) for r in read_jsonl(path)] == [(3, 3), (7, 7)]
    finally:
        SINK.clear()


def test_make_record_has_exactly_the_schema_fields_in_order():
    values = {name: None for name in reversed(RECORD_FIELDS)}
    assert list(make_record(**values)) == list(RECORD_FIELDS)
    assert {"doc_hash", "prompt_hash", "request_hash", "thinking_tokens"} <= set(RECORD_FIELDS)
    with pytest.raises(TypeError, match="missing \\['doc_hash'\\]"):
        make_record(**{k: v for k, v in values.items() if k != "doc_hash"})
    with pytest.raises(TypeError, match="unknown \\['extra'\\]"):
        make_record(**values, extra=1)


def test_a_generation_records_fields_are_asdicts_without_sharing_its_lists():
    import dataclasses

    from m1_models.budget_forcing import GenerationRecord

    record = GenerationRecord(forced=True, budget=64, thinking_tokens=12, finish_reasons=["stop"], servers=["a"])
    fields = record.fields()
    assert fields == dataclasses.asdict(record) and list(fields) == list(dataclasses.asdict(record))
    fields["finish_reasons"].append("length")
    fields["servers"].clear()
    assert record.finish_reasons == ["stop"] and record.servers == ["a"]
