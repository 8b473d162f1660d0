"""Build the demo model: a tiny Qwen2 chat model that answers ``m1_demo_chain`` by thinking, so that its accuracy
rises with the thinking budget, and "Wait" rounds help where it stops too early.

What it learns (the training text is exactly what budget forcing makes of a response, token for token):

* thinking, after ``<|im_start|>think\\n``: the first ward, then for every transfer the transfer and the ward it
  reaches (``c cf f fb b``: 2 tokens a step, so a chain of n transfers takes 2n + 1 tokens), then it stops
  (it writes ``<|im_start|>``, which ends the thinking); at a stop ward (``h``, ``q``, ``x``) it stops too;
* after ``Wait`` (appended by the controller in place of that stop) it repeats the ward it is at and goes on;
* after ``<|im_start|>answer`` it writes ``The last ward reached: \\boxed{ward X}`` for the last ward of its
  thinking: right when it followed the whole chain, wrong when it stopped at a stop ward;
* after ``<|im_start|>answer\\nFinal Answer:`` (the budget ran out mid-chain) it has to guess: in training, a
  random option.

The transfers are single tokens (`` cf``), so a step is one look-up: find the transfer that leaves the current
ward.  Trained from random weights, a 2-layer model needs thousands of steps to discover that look-up (measured:
about 90 % per step after 1000), so the build starts from a designed initialisation instead: the embeddings of the ward tokens spell out their wards (a
"from" coordinate and a "to" coordinate per ward), and the first attention head of the first layer is set to look
a ward up among the transfers (its query reads the current ward, its key the ward a transfer leaves, in the
head dimensions that rotary embeddings hardly turn).  All weights are then trained (:attr:`DemoModelSpec.train_steps`
steps on fresh questions, about a minute on one CPU core), which teaches the model when to stop, "Wait" and the
answer.  Greedy, it follows every chain of the bundled questions without a mistake (100 % at a budget of 64 with
one "Wait" round, under vLLM's default bfloat16).

The build is deterministic for a :class:`DemoModelSpec` and cached like the tiny test model
(``$M1_EVAL_CACHE`` or ``~/.cache/m1-eval``, folder ``demo-chain-qwen2-<spec hash>/demo-model``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from m1_base.markers import ANSWER_MARKER, IM_END, IM_START, OVERFLOW_MARKER, THINK_START
from m1_eval.tiny_model import default_cache_dir, ensure_built, qwen2_config, save_model, train_tokenizer
from m1_tasks.demo_chain import STOP_WARDS, WARDS, ChainQuestion, ChainSpec, make_question
from m1_tasks.prompt import render_prompt

logger = logging.getLogger(__name__)

SPEC_FILE = "demo_model_spec.json"
WAIT = "Wait"  # the m1 preset's thinking_n_ignore_str
HEAD_DIM = 64  # vLLM's CPU attention needs it


@dataclass(frozen=True)
class DemoModelSpec:
    """Everything that determines the built demo model; its hash names the cache folder."""

    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 2  # head size 64
    vocab_size: int = 1400  # every transfer is one token
    max_position_embeddings: int = 4096
    rope_theta: float = 1_000_000.0  # slow rotations: look-ups by content at any distance
    train_steps: int = 400
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    stop_loss_weight: float = 3.0  # the decision to stop is one token per chain: weigh it up
    tokenizer_texts: int = 3000
    embedding_scale: float = 0.5  # the ward coordinates of the ward tokens' embeddings
    lookup_scale: float = 1.5  # query and key weights of the look-up head
    lookup_copy: float = 0.2  # output weights of the look-up head
    wait_rate: float = 0.5  # share of the traces through a stop ward that go on after "Wait"
    final_wait_rate: float = 0.2  # share of the finished traces that get "Wait" rounds (1-3; it stops again)
    overflow_rate: float = 0.25  # share of the traces cut by the budget (then a guess)
    chain: ChainSpec = field(default_factory=ChainSpec)
    seed: int = 1
    version: int = 1

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


DEFAULT_SPEC = DemoModelSpec()


# ------------------------------------------------------------------------------------------ training text


class Part(Enum):
    GENERATED = "generated"  # the model writes it: trained
    APPENDED = "appended"  # the controller appends it: context only
    STOP = "stop"  # the model writes a stop string, which ends the round and is not kept: trained, not context


Segment = tuple[str, Part]


def ward_token(ward: str) -> str:
    return " " + ward


def transfer_token(transfer: str) -> str:
    return " " + transfer


def thinking_segments(question: ChainQuestion, rng: random.Random, spec: DemoModelSpec) -> tuple[list[Segment], str]:
    """The thinking as the model writes it (with the controller's "Wait" where it goes on after a stop) and the
    ward its thinking ends at."""
    wards = question.wards
    parts: list[Segment] = [(wards[0], Part.GENERATED)]
    for i in range(question.steps):
        reached = wards[i + 1]
        parts += [(transfer_token(wards[i] + reached), Part.GENERATED), (ward_token(reached), Part.GENERATED)]
        if reached in STOP_WARDS:
            parts.append((IM_START, Part.STOP))
            if rng.random() >= spec.wait_rate:
                return parts, reached
            parts += [(WAIT, Part.APPENDED), (ward_token(reached), Part.GENERATED)]
    parts.append((IM_START, Part.STOP))
    waits = 0  # "Wait" rounds after the end: it stops again each time
    while waits < 3 and rng.random() < (spec.final_wait_rate if waits == 0 else 0.5):
        parts += [(WAIT, Part.APPENDED), (IM_START, Part.STOP)]
        waits += 1
    return parts, question.answer


def answer_text(ward: str) -> str:
    return f"\nThe last ward reached: \\boxed{{ward {ward}}}"


def training_segments(question: ChainQuestion, rng: random.Random, spec: DemoModelSpec) -> list[Segment]:
    """Everything after the prompt: thinking, the controller's answer marker, the answer."""
    thinking, reached = thinking_segments(question, rng, spec)
    if rng.random() < spec.overflow_rate:  # the budget ends the thinking somewhere: a guess
        cut = rng.randrange(len(thinking))
        guess = rng.choice(list(question.option_texts().values()))
        return [*thinking[:cut], ("\n" + OVERFLOW_MARKER, Part.APPENDED), (f" \\boxed{{{guess}}}", Part.GENERATED),
                (IM_END, Part.GENERATED)]  # fmt: skip
    return [*thinking, ("\n" + ANSWER_MARKER, Part.APPENDED), (answer_text(reached), Part.GENERATED),
            (IM_END, Part.GENERATED)]  # fmt: skip


def chat_prompt(question: ChainQuestion) -> str:
    """The prompt as lm-eval renders it with --apply_chat_template (the m1 prompt in a user turn)."""
    record = question.record()
    user = render_prompt(str(record["question"]), record["options"])
    return f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def encode(tokenizer: Any, question: ChainQuestion, segments: list[Segment]) -> tuple[list[int], list[int]]:
    """Input ids and, per position, the id the model is trained to write next (-100: none).  Each piece is
    encoded on its own, as the controller appends it."""
    ids: list[int] = []
    for text in (chat_prompt(question), THINK_START):
        ids += tokenizer.encode(text, add_special_tokens=False)
    targets = [-100] * len(ids)
    stop_id = tokenizer.convert_tokens_to_ids(IM_START)
    for text, part in segments:
        if part is Part.STOP:
            targets[-1] = stop_id
            continue
        for token in tokenizer.encode(text, add_special_tokens=False):
            if part is Part.GENERATED:
                targets[-1] = token
            ids.append(token)
            targets.append(-100)
    return ids, targets


# ------------------------------------------------------------------------------------- designed initialisation


def _single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise RuntimeError(f"demo model: {text!r} is {len(ids)} tokens; raise DemoModelSpec.vocab_size")
    return ids[0]


def initialise(model: Any, tokenizer: Any, spec: DemoModelSpec) -> None:
    """Ward embeddings and the look-up head (see the module docstring); everything else keeps its random init.

    Embedding coordinates: 0-25 "leaves ward", 26-51 "at ward", 52-54 the token kind (transfer, first ward, ward);
    the other tokens live in the coordinates from 56 on.
    """
    import torch

    n = len(WARDS)
    leaves = {w: i for i, w in enumerate(WARDS)}
    at = {w: n + i for i, w in enumerate(WARDS)}
    kind_transfer, kind_first, kind_ward = 2 * n, 2 * n + 1, 2 * n + 2
    free = 2 * n + 4
    if spec.hidden_size < free + 8 or spec.hidden_size // spec.num_heads != HEAD_DIM:
        raise ValueError(f"the demo model needs hidden_size >= {free + 8} and head size {HEAD_DIM}")
    generator = torch.Generator().manual_seed(spec.seed)
    embedding = model.get_input_embeddings().weight
    attention = model.model.layers[0].self_attn
    # the head dimensions whose rotary frequencies are lowest: rotate_half pairs dimension i with i + 32
    slow = [*range(HEAD_DIM // 2 - 13, HEAD_DIM // 2), *range(HEAD_DIM - 13, HEAD_DIM)]
    with torch.no_grad():
        embedding.zero_()
        embedding[:, free:] = torch.randn(embedding.shape[0], spec.hidden_size - free, generator=generator) * 0.02

        def spell(text: str, coordinates: list[int]) -> None:
            row = _single_token(tokenizer, text)
            embedding[row] = 0.0
            embedding[row, coordinates] = spec.embedding_scale

        for ward in WARDS:
            spell(ward, [at[ward], kind_first])
            spell(ward_token(ward), [at[ward], kind_ward])
            for other in WARDS:
                if other != ward and not (ward in STOP_WARDS and other in STOP_WARDS):  # never in a chain
                    spell(transfer_token(ward + other), [leaves[ward], at[other], kind_transfer])
        head = slice(0, HEAD_DIM)  # head 0 (and its own key/value head)
        for weight in (attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight):
            weight[head] = 0.0
        for bias in (attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias):
            bias[head] = 0.0
        attention.o_proj.weight[:, head] = 0.0
        for i, ward in enumerate(WARDS):
            attention.q_proj.weight[slow[i], at[ward]] = spec.lookup_scale  # query: the ward I am at
            attention.k_proj.weight[slow[i], leaves[ward]] = spec.lookup_scale  # key: the ward a transfer leaves
            attention.v_proj.weight[i, leaves[ward]] = 1.0  # value: the transfer, copied to the output
            attention.v_proj.weight[n + i, at[ward]] = 1.0
            attention.o_proj.weight[leaves[ward], i] = spec.lookup_copy
            attention.o_proj.weight[at[ward], n + i] = spec.lookup_copy
        attention.v_proj.weight[2 * n, kind_transfer] = 1.0
        attention.o_proj.weight[kind_transfer, 2 * n] = spec.lookup_copy


# ------------------------------------------------------------------------------------------------ build


def build_demo_model(out_dir: Path, spec: DemoModelSpec = DEFAULT_SPEC) -> Path:
    """Train the tokenizer and the model on fresh questions and save both (safetensors) into ``out_dir``.

    Torch runs on one thread here: the same weights on every machine, whatever its core count, and no threads
    spinning against each other when the machine is busy (on an idle machine two threads save little)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(out_dir, spec)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir: Path, spec: DemoModelSpec) -> Path:
    import torch
    from transformers import Qwen2ForCausalLM

    started = time.monotonic()
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    examples: list[tuple[ChainQuestion, list[Segment]]] = []
    for _ in range(spec.train_steps * spec.batch_size):
        question = make_question(rng, spec.chain)
        examples.append((question, training_segments(question, rng, spec)))
    corpus = [
        chat_prompt(q) + THINK_START + "".join(text for text, _ in parts)
        for q, parts in examples[: spec.tokenizer_texts]
    ]
    tokenizer = train_tokenizer(corpus, spec.vocab_size, spec.max_position_embeddings)
    config = qwen2_config(
        tokenizer,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        num_kv_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
    )
    model = Qwen2ForCausalLM(config)
    initialise(model, tokenizer, spec)

    # batches of similar lengths (little padding), in a random order
    encoded = sorted((encode(tokenizer, q, s) for q, s in examples), key=lambda pair: len(pair[0]))
    batches = [encoded[i : i + spec.batch_size] for i in range(0, len(encoded), spec.batch_size)]
    rng.shuffle(batches)
    stop_id = tokenizer.convert_tokens_to_ids(IM_START)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:  # linear warm-up, then cosine
        return min(1.0, (step + 1) / spec.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / spec.train_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    for step in range(spec.train_steps):
        batch = batches[step % len(batches)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        targets = torch.full((len(batch), width), -100)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, wanted) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            targets[row, : len(ids)] = torch.tensor(wanted)
            attention_mask[row, : len(ids)] = 1
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        flat = targets.reshape(-1)
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), flat, ignore_index=-100, reduction="none"
        )
        weights = torch.where(flat == stop_id, spec.stop_loss_weight, 1.0) * (flat != -100)
        loss = (losses * weights).sum() / weights.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == spec.train_steps - 1:
            logger.info("demo model: step %d/%d loss %.3f", step + 1, spec.train_steps, loss.item())
    model.eval()
    logger.info("demo model: trained in %.0f s", time.monotonic() - started)
    return save_model(out_dir, model, tokenizer, SPEC_FILE, spec)


#: the model folder's name, which lm-eval and the report show as the model's name
MODEL_NAME = "demo-model"


def demo_model_dir(spec: DemoModelSpec = DEFAULT_SPEC) -> Path:
    """``<cache>/demo-chain-qwen2-<spec hash>/demo-model``."""
    return default_cache_dir() / f"demo-chain-qwen2-{spec.digest()}" / MODEL_NAME


def ensure_demo_model(path: Path | None = None, spec: DemoModelSpec = DEFAULT_SPEC) -> Path:
    """Return a folder holding the demo model, building it first (about a minute on one CPU core) when it is not
    there yet; an interrupted build leaves nothing behind."""
    what = "the demo model (about a minute on one CPU core)"
    if path:
        return ensure_built(Path(path), SPEC_FILE, lambda tmp: build_demo_model(tmp, spec), what)
    folder = demo_model_dir(spec)
    ensure_built(folder.parent, f"{MODEL_NAME}/{SPEC_FILE}", lambda tmp: build_demo_model(tmp / MODEL_NAME, spec), what)
    return folder
