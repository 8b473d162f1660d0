"""Build a tiny Qwen2-architecture chat model that thinks and answers, for tests and the demo.

vLLM's CPU backend needs a head size of 64, so the model has hidden_size 128 with two attention heads and one
KV head.  The tokenizer is a byte-level BPE trained in-process (``tokenizers``) with the Qwen special tokens
and a Qwen-style chat template.  The weights are trained for a few hundred CPU steps on synthetic
``<|im_start|>think ... <|im_start|>answer ... \\boxed{X}<|im_end|>`` text, so the model ends its thinking at
varied lengths and then answers: a random-weight model never stops thinking.

The build is deterministic for a given :class:`TinyModelSpec` and cached on disk (see :func:`ensure_tiny_model`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from m1_base.markers import ANSWER_MARKER, IM_END, IM_START, OVERFLOW_MARKER, THINK_START

logger = logging.getLogger(__name__)

ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    f"{{{{ '{IM_START}' + message['role'] + '\\n' + message['content'] + '{IM_END}' + '\\n' }}}}"
    "{% endfor %}"
    f"{{% if add_generation_prompt %}}{{{{ '{IM_START}assistant\\n' }}}}{{% endif %}}"
)

_WORDS = (
    "patient fever cough pain chest heart lung liver kidney blood pressure dose drug therapy infection "
    "acute chronic sign symptom test result normal high low risk cause likely first next step treatment "
    "diagnosis history exam lesion nerve muscle bone skin cell tumor gene protein enzyme hormone insulin "
    "glucose sodium potassium anemia asthma stroke sepsis ulcer renal hepatic cardiac pulmonary child adult "
    "woman man year old presents with after days weeks because therefore however consider rule out"
).split()

_THINK_WORDS = (
    "so the patient has this finding which suggests that option could fit but we should check the other "
    "choices first because the history points to a common cause and the exam supports it hmm let me "
    "recall the mechanism here it is related to the enzyme and the drug effect on the organ"
).split()

QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

ANSWER_INSTRUCTION = "Return your final response within \\boxed{}."


@dataclass(frozen=True)
class TinyModelSpec:
    """Everything that determines the built model; its hash names the cache folder."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 2
    num_kv_heads: int = 1
    max_position_embeddings: int = 4096
    train_steps: int = 300
    batch_size: int = 16
    learning_rate: float = 3e-3
    median_thinking_words: int = 40
    seed: int = 1234
    version: int = 2
    #: share of training texts whose thinking is cut and answered after the overflow marker ("Final Answer:") in a
    #: sentence, as the m1 models answer when the budget runs out; 0 (the test model): never, so its forced answers
    #: run on to their cap
    overflow_rate: float = 0.0

    def digest(self) -> str:
        fields = asdict(self)
        if not fields["overflow_rate"]:  # the test model's folder name from before the field existed
            del fields["overflow_rate"]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _question(rng: random.Random) -> str:
    n_options = rng.choice([3, 4, 4, 5])
    stem = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30))).capitalize() + "?"
    options = "\n".join(
        f"{chr(65 + i)}. " + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))) for i in range(n_options)
    )
    return f"{stem}\n{options}\n{ANSWER_INSTRUCTION}", n_options


def _thinking_length(rng: random.Random, median: int) -> int:
    # Log-normal: most thoughts are short, a few are long (as the reasoning models' are).
    return max(3, min(int(rng.lognormvariate(0.0, 0.8) * median), 12 * median))


def synthetic_conversation(rng: random.Random, median_thinking_words: int, overflow_rate: float = 0.0) -> str:
    """One training text: chat prompt, thinking in numbered steps, answer marker, boxed answer.

    Numbered steps of fixed length give the model something to count, so that even greedy decoding ends its
    thinking (after a number of steps that grows with the hazard learnt from the log-normal step counts).
    """
    question, n_options = _question(rng)
    letter = chr(65 + rng.randrange(n_options))
    n_steps = max(1, _thinking_length(rng, median_thinking_words) // 6)
    steps = [f"step {k}: " + " ".join(rng.choice(_THINK_WORDS) for _ in range(5)) + "." for k in range(1, n_steps + 1)]
    if rng.random() < 0.3:
        steps.append("Wait, " + " ".join(rng.choice(_THINK_WORDS) for _ in range(5)) + ".")
    if overflow_rate and rng.random() < overflow_rate:  # the budget ran out mid-thought: a one-sentence answer
        cut = rng.randrange(1, len(steps) + 1)
        thinking = "\n".join(steps[:cut])
        return (
            f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n"
            f"{THINK_START}{thinking}\n{OVERFLOW_MARKER} The answer is \\boxed{{{letter}}}.{IM_END}\n{ENDOFTEXT}"
        )
    thinking = "\n".join(steps)
    return (
        f"{IM_START}user\n{question}{IM_END}\n{IM_START}assistant\n"
        f"{THINK_START}{thinking}\n{ANSWER_MARKER}\n"
        f"The answer is \\boxed{{{letter}}}.{IM_END}\n{ENDOFTEXT}"
    )


def train_tokenizer(corpus: list[str], vocab_size: int, model_max_length: int):
    """A byte-level BPE tokenizer trained on ``corpus`` with Qwen2's normalizer and pre-tokenizer, the Qwen
    special tokens and :data:`CHAT_TEMPLATE` (shared by the tiny test model and the demo model)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own normalizer and pre-tokenizer: transformers loads a qwen2 model's tokenizer as
    # Qwen2Tokenizer, which imposes them, so training with anything else gives merges it never produces.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        bos_token=None,
        unk_token=None,
        model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _train_tokenizer(corpus: list[str], spec: TinyModelSpec):
    return train_tokenizer(corpus, spec.vocab_size, spec.max_position_embeddings)


def qwen2_config(tokenizer, *, hidden_size: int, intermediate_size: int, num_layers: int, num_heads: int,
                 num_kv_heads: int, max_position_embeddings: int, **extra):
    """A float32 ``Qwen2Config`` with tied embeddings for ``tokenizer`` (EOS ``<|im_end|>``, no BOS)."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        **extra,
    )


def save_model(out_dir: Path, model, tokenizer, spec_file: str, spec) -> Path:
    """Save the model (safetensors), its tokenizer and the spec that built it (written last: its presence marks a
    complete build)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / spec_file).write_text(json.dumps(asdict(spec), indent=2))
    return out_dir


def build_tiny_model(out_dir: Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Train the tokenizer and the model and save both (safetensors) into ``out_dir``."""
    import torch
    from transformers import Qwen2ForCausalLM

    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    corpus = [synthetic_conversation(rng, spec.median_thinking_words, spec.overflow_rate) for _ in range(3000)]
    tokenizer = _train_tokenizer(corpus, spec)
    config = qwen2_config(
        tokenizer,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        num_kv_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
    )
    model = Qwen2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.train_steps)
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"][:1024] for text in corpus]
    model.train()
    for step in range(spec.train_steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(spec.batch_size)]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(ids)
        loss = model(input_ids=input_ids, attention_mask=(labels != -100).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == spec.train_steps - 1:
            logger.info("tiny model: step %d/%d loss %.3f", step + 1, spec.train_steps, loss.item())
    model.eval()
    return save_model(out_dir, model, tokenizer, "tiny_model_spec.json", spec)


def default_cache_dir() -> Path:
    root = os.environ.get("M1_EVAL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "m1-eval"
    )
    return Path(root)


def ensure_tiny_model(path: Path | None = None, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Return a folder holding the tiny model, building it first when it is not there yet.

    The build goes to a temporary sibling folder that is renamed into place, so an interrupted build never
    leaves a half-written model behind and concurrent builders do not clash.
    """
    target = Path(path) if path else default_cache_dir() / f"tiny-qwen2-{spec.digest()}"
    return ensure_built(target, "tiny_model_spec.json", lambda tmp: build_tiny_model(tmp, spec),
                        "the tiny model (about a minute on 2 CPU cores)")


def ensure_built(target: Path, marker: str, build: Callable[[Path], object], what: str) -> Path:
    """Return ``target`` once it holds ``marker``, running ``build(tmp)`` first when it does not.

    The build goes to a temporary sibling folder that is renamed into place, so an interrupted build never
    leaves a half-written model behind and concurrent builders do not clash.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        logger.info("building %s in %s", what, target)
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # someone else finished first
            if not (target / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
