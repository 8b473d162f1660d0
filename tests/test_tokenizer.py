"""HFTokenizer's fast path (the Rust tokenizer directly, short strings cached) gives transformers' own ids and texts.

The controller's token accounting (budgets, records) rests on these ids: any difference from what transformers
returns would move a budget boundary, so the equality is pinned over arbitrary text, special tokens included.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1_models.backend import HFTokenizer

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>answer", "<|im_start|>think"]
TEXTS = st.lists(
    st.one_of(st.text(max_size=40), st.sampled_from(SPECIALS), st.sampled_from([" Wait", "Wait", "\n", "  ", "é"])),
    max_size=12,
).map("".join)


@pytest.fixture(scope="module")
def tokenizers(tiny_model):
    """The tiny model's tokenizer as lm-eval and vLLM load it, and one whose tokenizer.json carries truncation."""
    from transformers import AutoTokenizer

    from m1_eval.tiny_model import train_tokenizer

    loaded = AutoTokenizer.from_pretrained(str(tiny_model))
    corpus = ["<|im_start|>user\nfever and cough, what is it?<|im_end|>\n" * 3, "Wait, the answer is \\boxed{B}."]
    truncating = train_tokenizer(corpus * 20, vocab_size=400, model_max_length=64)
    truncating.backend_tokenizer.enable_truncation(max_length=8)  # transformers switches it off per call
    return [loaded, truncating]


def _reference_encode(hf, text: str) -> list[int]:
    return list(hf(text, add_special_tokens=False)["input_ids"])


def _reference_decode(hf, ids: list[int]) -> str:
    return hf.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_the_fast_path_is_taken_for_fast_tokenizers(tokenizers):
    for hf in tokenizers:
        assert hf.is_fast and HFTokenizer(hf)._rust is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_encode_equals_transformers(tokenizers, text):
    for hf in tokenizers:
        wrapped = HFTokenizer(hf)
        expected = _reference_encode(hf, text)
        assert wrapped.encode(text) == expected
        assert wrapped.encode(text) == expected  # again, from the cache for short texts
        assert wrapped.decode(expected) == _reference_decode(hf, expected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_decode_of_any_ids_equals_transformers(tokenizers, data):
    """Any id sequence, including ones that cut a multi-byte character or a special token apart."""
    for hf in tokenizers:
        ids = data.draw(st.lists(st.integers(0, len(hf) - 1), max_size=60))
        assert HFTokenizer(hf).decode(ids) == _reference_decode(hf, ids)


def test_cached_ids_cannot_be_changed_by_the_caller(tokenizers):
    wrapped = HFTokenizer(tokenizers[0])
    ids = wrapped.encode(" Wait")
    ids.append(0)
    assert wrapped.encode(" Wait") == _reference_encode(tokenizers[0], " Wait")
