"""A nested sweep (steps with the same prefix generated once) vs its largest setting alone and vs a flat sweep.

    python benchmarks/nested_sweep.py [--repeats 3] [--questions 256] [--largest 512] [--brief-answers]

The sweep: thinking budgets B/16, B/8, B/4, B/2, B (B = ``--largest``) x "Wait" rounds {0, 1}, answers capped at 64
tokens, ``--questions`` questions: every setting a request per question, all in one m1-vllm ``generate_until``
call, as ``m1-sweep`` makes it.  Seeded sampling (temperature 0.8): the tiny model's thinking then ends at
long-tailed lengths (greedy, it thinks on to every budget); each step draws from its own seed, so the settings
share their steps exactly as under greedy decoding.  Three sides, in one process, alternating:

* nested: the sweep as m1-vllm runs it (``m1_models/step_sharing.py``);
* flat: the same call with ``share_steps`` off (every setting decoded on its own, as before the nesting);
* largest: the largest setting alone (budget B, one "Wait" round).

Prints three lines:

* ``nested_vs_largest``: nested / largest wall time (target <= 1.30);
* ``nested_tokens``: tokens the nested sweep decoded / tokens in the sweep's token tree, every distinct prefix of
  the settings' step sequences counted once (target <= 1.02: nothing decoded twice);
* ``nested_vs_flat``: nested / flat wall time (target <= 0.55).
"""

from __future__ import annotations

import itertools
import statistics

from gen_common import (
    alternate,
    brief_answer_model_path,
    engine_args,
    instances,
    parser,
    questions,
    result_line,
    start_lm,
)

MODULUS = (1 << 61) - 1


def sweep_gen_kwargs(largest: int, answer_cap: int = 64, temperature: float = 0.8) -> list[dict]:
    budgets = [largest // 16, largest // 8, largest // 4, largest // 2, largest]
    return [
        {"max_tokens_thinking": b, "thinking_n_ignore": n, "max_tokens_answer": answer_cap, "temperature": temperature}
        for b, n in itertools.product(budgets, (0, 1))
    ]


def token_tree(calls: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> int:
    """Distinct prefixes (prompt ids + generated ids up to each generated token) over every step's (prompt,
    generated) pair: the tokens a sweep needs decoded at least once.  Prefixes are told apart by their length and
    a 61-bit polynomial hash."""
    nodes: set[tuple[int, int]] = set()
    prompts: dict[tuple[int, ...], int] = {}
    for prompt, generated in calls:
        h = prompts.get(prompt)
        if h is None:
            h = 0
            for token in prompt:
                h = (h * 1_000_003 + token + 1) % MODULUS
            prompts[prompt] = h
        position = len(prompt)
        for token in generated:
            h = (h * 1_000_003 + token + 1) % MODULUS
            position += 1
            nodes.add((position, h))
    return len(nodes)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--largest", type=int, default=512, help="the largest thinking budget B (default 512)")
    p.add_argument("--answer-cap", type=int, default=64, help="max_tokens_answer (default 64)")
    p.add_argument("--brief-answers", action="store_true",
                   help="the tiny model trained also to answer in a sentence after 'Final Answer:' (as the m1 models "
                        "do) instead of the test model, whose forced answers run on to the cap")  # fmt: skip
    p.add_argument("--thinking-words", type=int, default=40,
                   help="with --brief-answers: the median words of the model's training thoughts (default 40)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="the sampling temperature (default 0.8): where the model's thinking ends")  # fmt: skip
    args = p.parse_args()
    from m1_models import lm_eval_model
    from m1_models.records import RecordSink
    from m1_models.step_sharing import StepSharing

    model = brief_answer_model_path(args.thinking_words) if args.brief_answers else None
    lm = start_lm(model=model, **engine_args(args))
    prompts = questions(args.questions)
    settings = sweep_gen_kwargs(args.largest, args.answer_cap, args.temperature)
    sweep = [request for kwargs in settings for request in instances(lm, prompts, kwargs)]
    largest = instances(lm, prompts, settings[-1])

    class Recording(StepSharing):
        """Keeps every step the controller saw answered: (prompt ids, generated ids, generated here or taken)."""

        calls_seen: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []

        def submit(self, key, step):
            self._asked = getattr(self, "_asked", {})
            self._asked[key] = step
            super().submit(key, step)

        def poll(self):
            out = super().poll()
            for key, result in out:
                Recording.calls_seen.append((self._asked[key].prompt_ids, result.token_ids, result.shared))
            return out

    keep = RecordSink()
    lm.record_sink = keep
    lm_eval_model.StepSharing = Recording  # one nested run, recorded: the token tree
    texts_nested = lm.generate_until(sweep, disable_tqdm=True)
    lm_eval_model.StepSharing = StepSharing
    records = keep.pop("bench")
    decoded = sum(len(generated) for _, generated, shared in Recording.calls_seen if not shared)
    tree = token_tree([(prompt, generated) for prompt, generated, _ in Recording.calls_seen])
    assert decoded == sum(r["decoded_tokens"] for r in records)
    lm.generate_until(largest, disable_tqdm=True)
    largest_decoded = sum(r["decoded_tokens"] for r in keep.pop("bench"))
    lm.share_steps = False
    texts_flat = lm.generate_until(sweep, disable_tqdm=True)
    flat_records = keep.pop("bench")
    lm.share_steps = True
    same = sum(a == b for a, b in zip(texts_nested, texts_flat, strict=True))
    top = [r for r in records if r["budget"] == args.largest and r["ignore_rounds"] <= 1]
    thinking = sorted(r["thinking_tokens"] for r in records if r["budget"] == args.largest)
    print(f"requests: {len(sweep)} ({len(prompts)} questions x {len(settings)} settings); thinking tokens at "
          f"budget {args.largest}: p10 {thinking[int(0.1 * len(thinking))]}, median {statistics.median(thinking)}, "
          f"p90 {thinking[int(0.9 * len(thinking))]}, max {thinking[-1]} ({len(top)} records)")  # fmt: skip
    print(f"decoded: nested {decoded}, flat {sum(r['decoded_tokens'] for r in flat_records)}, largest alone "
          f"{largest_decoded}; token tree {tree} ({tree / largest_decoded:.2f}x the largest setting's tokens: the "
          f"floor of nested_vs_largest when time follows tokens); texts equal to the flat sweep's: "
          f"{same}/{len(sweep)} (bfloat16 batches may flip a few)")
    budgets = sorted({r["budget"] for r in records})
    answers = {b: [r["answer_tokens"] for r in records if r["budget"] == b] for b in budgets}
    print("mean answer tokens by budget: " + ", ".join(f"{b}: {sum(a) / len(a):.1f}" for b, a in answers.items()))

    def nested() -> None:
        lm.generate_until(sweep, disable_tqdm=True)

    def flat() -> None:
        lm.share_steps = False
        try:
            lm.generate_until(sweep, disable_tqdm=True)
        finally:
            lm.share_steps = True

    def alone() -> None:
        lm.generate_until(largest, disable_tqdm=True)

    timings = alternate({"nested": nested, "flat": flat, "largest alone": alone}, args.repeats)
    keep.pop("bench")
    for name in ("nested", "flat", "largest alone"):
        print(timings.describe(name))
    print(result_line("nested_vs_largest", timings.median("nested") / timings.median("largest alone"), 1.30))
    print(result_line("nested_tokens", decoded / tree, 1.02))
    print(result_line("nested_vs_flat", timings.median("nested") / timings.median("flat"), 0.55))
    lm.close()


if __name__ == "__main__":
    main()
