"""Shared pieces of the generation benchmarks: the tiny model, one engine, requests, timing and the result line.

Every benchmark measures both sides in the same process run, alternating their order, and reports medians of
``--repeats`` repetitions; its last line is ``NAME: ratio=<x> target=<y>`` with the raw timings above it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPICS = ["fever", "cough", "chest pain", "jaundice", "rash", "headache", "anemia", "dyspnea", "edema", "syncope"]
#: the forced workload of forced_vs_floor and continuous_vs_rounds: long-tailed sampled thinking, 2 "Wait" rounds
FORCED_GEN_KWARGS = {"max_tokens_thinking": 512, "thinking_n_ignore": 2, "max_tokens_answer": 64, "temperature": 0.8}
OPTIONS = ["pneumonia", "sepsis", "asthma", "ulcer", "stroke", "hepatitis", "anemia", "heart failure"]


def tiny_model_path() -> str:
    try:
        from m1_eval.tiny_model import ensure_tiny_model
    except ImportError:  # before the module moved
        from m1_eval.tiny_model import ensure_tiny_model
    return str(ensure_tiny_model())


def questions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct m1-style questions (prompt lengths vary, as in the real benchmarks)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        history = " ".join(rng.choice(TOPICS) for _ in range(rng.randint(2, 30)))
        options = rng.sample(OPTIONS, 4)
        out.append(
            f"Case {i}: a patient presents with {topic}; history of {history}. What is the most likely diagnosis?\n"
            + "\n".join(f"{chr(65 + k)}. {text}" for k, text in enumerate(options))
            + "\nReturn your final response within \\boxed{}."
        )
    return out


def write_data(folder: Path, n: int) -> Path:
    """``n`` MedQA-shaped records in the structure of m1_eval_data.json (source ``MedQA_USLME_test``)."""
    records = []
    for i, text in enumerate(questions(n)):
        question, _, rest = text.partition("\n")
        options = dict(line.split(". ", 1) for line in rest.split("\n")[:4])
        records.append({"question": question, "options": options, "answer": options["B"], "answer_idx": "B"})
    path = folder / "m1_eval_data.json"
    path.write_text(json.dumps({"MedQA_USLME_test": records}))
    return path


def brief_answer_model_path(thinking_words: int = 40) -> str:
    """The tiny model trained also on thinking cut by the budget and answered in a sentence after "Final Answer:"
    (``TinyModelSpec.overflow_rate``), as the m1 models answer; the test model never saw that marker, and its
    forced answers run on to their cap.  ``thinking_words``: the median length of its training thoughts (the test
    model's: 40)."""
    from m1_eval.tiny_model import TinyModelSpec, ensure_tiny_model

    spec = TinyModelSpec(overflow_rate=0.3, median_thinking_words=thinking_words)
    return str(ensure_tiny_model(spec=spec))


def start_lm(max_model_len: int = 2048, model: str | None = None, **engine_kwargs: Any):
    """An m1-vllm model on the tiny model (or ``model``), its engine started (start-up is not part of any
    measurement)."""
    from m1_models.vllm_model import M1VLLM

    lm = M1VLLM(pretrained=model or tiny_model_path(), max_model_len=max_model_len, **engine_kwargs)
    lm.progress_bar = False
    _ = lm.llm  # start the engine now
    return lm


def instances(lm: Any, prompts: list[str], gen_kwargs: dict[str, Any], task: str = "bench") -> list[Any]:
    from lm_eval.api.instance import Instance

    return [
        Instance(
            "generate_until",
            {},
            (lm.apply_chat_template([{"role": "user", "content": p}]), dict(gen_kwargs)),
            idx=0,
            metadata=(task, i, 1),
        )
        for i, p in enumerate(prompts)
    ]


class StepCounter:
    """Counts ``LLMEngine.step`` calls (engine steps) of an m1-vllm model's engine."""

    def __init__(self, lm: Any) -> None:
        self.engine = lm.llm.llm_engine
        self.steps = 0
        self._original = self.engine.step

        def counting_step(*args: Any, **kwargs: Any):
            self.steps += 1
            return self._original(*args, **kwargs)

        self.engine.step = counting_step

    def take(self) -> int:
        steps, self.steps = self.steps, 0
        return steps


@dataclass
class Timings:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.values.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def describe(self, name: str) -> str:
        runs = ", ".join(f"{v:.2f}" for v in self.values[name])
        return f"{name}: median {self.median(name):.2f} s (runs: {runs})"


def alternate(sides: dict[str, Callable[[], Any]], repeats: int) -> Timings:
    """Run every side ``repeats`` times, in alternating order (A B, B A, A B, ...); wall time of each."""
    timings = Timings()
    names = list(sides)
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else list(reversed(names))
        for name in order:
            start = time.perf_counter()
            sides[name]()
            timings.add(name, time.perf_counter() - start)
    return timings


def result_line(name: str, ratio: float, target: float) -> str:
    verdict = "meets" if ratio <= target else "MISSES"
    return f"{name}: ratio={ratio:.3f} target={target}  ({verdict} the target)"


def parser(description: str, repeats: int = 3) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=repeats, help=f"repetitions per side (default {repeats})")
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra m1-vllm model_arg / vllm.EngineArgs field for the engine, e.g. block_size=32 "
                        "(repeatable)")  # fmt: skip
    return p


def engine_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--engine-arg KEY=VALUE`` options as keyword arguments (values parsed as JSON when they are JSON)."""
    out: dict[str, Any] = {}
    for item in args.engine_arg:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
