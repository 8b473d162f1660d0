"""``continuous`` vs ``rounds``: the two budget-forcing schedules on 256 requests with long-tailed thinking.

    python benchmarks/continuous_vs_rounds.py [--repeats 3] [--requests 256]

Seeded sampling (temperature 0.8), thinking budget 512, 2 ignore rounds, one engine. ``rounds`` runs each round
as one batch that waits for its slowest request (the m1 and s1 reference scripts); ``continuous`` submits a
request's next phase as soon as its current one ends. Outputs must be identical (checked). Prints the wall-time
ratio (target <= 0.80 here) and the ratio of engine steps (target <= 0.60: on a GPU a decode step costs about the
same at batch 8 as at 256, so the step ratio is what a GPU user gets).
"""

from __future__ import annotations

import statistics

from gen_common import engine_args, FORCED_GEN_KWARGS, StepCounter, alternate, instances, parser, questions, result_line, start_lm

GEN_KWARGS = FORCED_GEN_KWARGS


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=256)
    args = p.parse_args()
    lm = start_lm(**engine_args(args))
    requests = instances(lm, questions(args.requests), GEN_KWARGS)
    counter = StepCounter(lm)
    outputs: dict[str, list[str]] = {}
    steps: dict[str, list[int]] = {"continuous": [], "rounds": []}

    def side(schedule: str):
        def run() -> None:
            lm.schedule = schedule
            counter.take()
            texts = lm.generate_until(requests, disable_tqdm=True)
            steps[schedule].append(counter.take())
            if outputs.setdefault(schedule, texts) != texts:
                raise SystemExit(f"{schedule}: outputs differ between repetitions")

        return run

    timings = alternate({"continuous": side("continuous"), "rounds": side("rounds")}, args.repeats)
    same = sum(a == b for a, b in zip(outputs["continuous"], outputs["rounds"], strict=True))
    print(f"requests: {len(requests)}, identical outputs: {same}/{len(requests)}")
    if same != len(requests):
        raise SystemExit("the schedules gave different outputs")
    for name in ("continuous", "rounds"):
        print(timings.describe(name) + f"; engine steps {statistics.median(steps[name]):.0f}")
    print(result_line("continuous_vs_rounds_steps",
                      statistics.median(steps["continuous"]) / statistics.median(steps["rounds"]), 0.60))
    print(result_line("continuous_vs_rounds", timings.median("continuous") / timings.median("rounds"), 0.80))
    lm.close()


if __name__ == "__main__":
    main()
