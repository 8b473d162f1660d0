"""The ``m1_demo_chain`` task: multiple-choice questions whose answer is found only by following a chain of steps.

A patient moves from ward to ward (wards are the letters ``a``-``z``).  The question lists the transfers in a
shuffled order, each as two letters (``ab``: from ward a to ward b), names the first ward, and asks which ward the
patient reaches last; the options are four wards of the chain.  Only following the transfers one by one from the
first ward finds the answer, and chains run from 2 to 22 transfers, so answering takes more thinking for longer
chains: the demo's test-time scaling.  In 40% of the questions the chain passes through one of the
:data:`STOP_WARDS` (``h``, ``q``, ``x``), where the demo model (:mod:`m1_eval.demo_model`) was trained to stop
thinking too early, as reasoning models do; a "Wait" round makes it go on.

Records have the m1 structure (``question``, ``options``, ``answer``, ``answer_idx``) and render with the m1 prompt
(question, ``"A. ward b"`` option lines, "Return your final response within \\boxed{}.").  The bundled file
``demo_data/m1_demo_chain.json`` is :func:`demo_records` (regenerate: ``python -m m1_tasks.demo_chain``).

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import string
import sys
from dataclasses import dataclass
from pathlib import Path

#: the wards
WARDS = string.ascii_lowercase
#: wards at which the demo model stops thinking early (at most one per chain, never the first or the last ward)
STOP_WARDS = "hqx"
ORDINARY_WARDS = "".join(w for w in WARDS if w not in STOP_WARDS)
OPTION_LETTERS = "ABCD"

SOURCE = "m1_demo_chain"
CHAIN_FILE = Path(__file__).resolve().parent / "demo_data" / f"{SOURCE}.json"
DEMO_SEED = 2504  # the bundled file's seed
DEMO_COUNT = 100  # the bundled file's questions

QUESTION_TEMPLATE = (
    "A patient changes wards. Each transfer below names the ward left, then the ward entered: {transfers}\n"
    "The patient starts from ward ({start}). Which ward does the patient reach last?"
)


@dataclass(frozen=True)
class ChainSpec:
    """How questions are drawn."""

    min_steps: int = 2
    max_steps: int = 22  # at most len(ORDINARY_WARDS) - 1: a chain never visits a ward twice
    stop_ward_rate: float = 0.4  # share of chains that pass through a stop ward
    n_options: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps <= len(ORDINARY_WARDS) - 1:
            raise ValueError(f"chain lengths {self.min_steps}..{self.max_steps} do not fit {len(ORDINARY_WARDS)} wards")
        if not 2 <= self.n_options <= len(OPTION_LETTERS):
            raise ValueError(f"n_options must be 2..{len(OPTION_LETTERS)}")


DEFAULT_CHAIN = ChainSpec()


@dataclass(frozen=True)
class ChainQuestion:
    """One question: the wards of the chain in order, the shuffled transfers and the options (wards)."""

    wards: tuple[str, ...]  # wards[0] is the start, wards[-1] the answer
    transfers: tuple[str, ...]  # "ab" = from a to b, in the order the question lists them
    options: tuple[str, ...]  # one ward per option letter

    @property
    def steps(self) -> int:
        return len(self.wards) - 1

    @property
    def answer(self) -> str:
        return self.wards[-1]

    @property
    def answer_letter(self) -> str:
        return OPTION_LETTERS[self.options.index(self.answer)]

    @property
    def stop_index(self) -> int | None:
        """Index in ``wards`` of the stop ward the chain passes through (None: none)."""
        return next((i for i, ward in enumerate(self.wards) if ward in STOP_WARDS), None)

    def question_text(self) -> str:
        return QUESTION_TEMPLATE.format(transfers=" ".join(self.transfers), start=self.wards[0])

    def option_texts(self) -> dict[str, str]:
        return {OPTION_LETTERS[i]: f"ward {ward}" for i, ward in enumerate(self.options)}

    def record(self) -> dict[str, object]:
        """The m1 record: ``question``, ``options`` (letter -> text), ``answer`` (text), ``answer_idx`` (letter)."""
        return {
            "question": self.question_text(),
            "options": self.option_texts(),
            "answer": f"ward {self.answer}",
            "answer_idx": self.answer_letter,
        }


def draw_steps(rng: random.Random, spec: ChainSpec) -> int:
    """A chain length, log-uniform over ``min_steps..max_steps``: about as many questions need 2-3 steps as 4-7,
    8-15 or 16-22."""
    low, high = math.log(spec.min_steps), math.log(spec.max_steps + 1)
    return max(spec.min_steps, min(spec.max_steps, int(math.exp(rng.uniform(low, high)))))


def make_question(rng: random.Random, spec: ChainSpec = DEFAULT_CHAIN) -> ChainQuestion:
    steps = draw_steps(rng, spec)
    wards = rng.sample(ORDINARY_WARDS, steps + 1)
    if steps >= 2 and rng.random() < spec.stop_ward_rate:
        wards[rng.randrange(1, steps)] = rng.choice(STOP_WARDS)
    transfers = [wards[i] + wards[i + 1] for i in range(steps)]
    rng.shuffle(transfers)
    # distractors: the stop ward first (the answer of a model that stopped there), then other wards of the chain,
    # then wards off the chain when the chain is too short
    distractors = [w for w in wards[1:-1] if w in STOP_WARDS]
    others = [w for w in wards[:-1] if w not in distractors]
    rng.shuffle(others)
    distractors += others
    outside = [w for w in ORDINARY_WARDS if w not in wards]
    rng.shuffle(outside)
    distractors += outside
    options = [wards[-1], *distractors[: spec.n_options - 1]]
    rng.shuffle(options)
    return ChainQuestion(tuple(wards), tuple(transfers), tuple(options))


def make_questions(n: int, seed: int, spec: ChainSpec = DEFAULT_CHAIN) -> list[ChainQuestion]:
    rng = random.Random(seed)
    return [make_question(rng, spec) for _ in range(n)]


def demo_questions() -> list[ChainQuestion]:
    """The questions of the bundled file."""
    return make_questions(DEMO_COUNT, DEMO_SEED)


def demo_records() -> dict[str, list[dict[str, object]]]:
    """The bundled file's content: ``{"m1_demo_chain": [record, ...]}``."""
    return {SOURCE: [q.record() for q in demo_questions()]}


def render_demo_file() -> str:
    return json.dumps(demo_records(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m m1_tasks.demo_chain", description=f"Write (or --check) the bundled {CHAIN_FILE.name}."
    )
    parser.add_argument("--out", type=Path, default=CHAIN_FILE, help=f"default: {CHAIN_FILE}")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from what it would write")
    args = parser.parse_args(argv)
    text = render_demo_file()
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
