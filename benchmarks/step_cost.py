"""What one engine step costs on this machine, by batch size: the cost model behind ``continuous_vs_rounds``.

    python benchmarks/step_cost.py [--batches 1,8,32,128,256] [--tokens 200]

One m1-vllm engine on the tiny model; for each batch size, one ``LLM.generate`` of that many prompts, each
generating exactly ``--tokens`` tokens (seeded sampling, temperature 0.8), timed after a warm-up of the same
call, and divided by the engine steps it took. A diagnostic (no target): if a step costs ``f + c * batch``, a
schedule that saves steps saves ``f`` per step, which is small on a CPU and most of a step on a GPU.
"""

from __future__ import annotations

import time

from gen_common import StepCounter, engine_args, parser, questions, start_lm


def main() -> None:
    p = parser(__doc__, repeats=1)
    p.add_argument("--batches", default="1,8,32,128,256")
    p.add_argument("--tokens", type=int, default=200)
    args = p.parse_args()
    from vllm import SamplingParams

    lm = start_lm(**engine_args(args))
    counter = StepCounter(lm)
    texts = questions(max(int(b) for b in args.batches.split(",")))
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = [{"prompt_token_ids": lm.tokenizer.encode(text)} for text in texts[:batch]]
        params = SamplingParams(temperature=0.8, seed=1, max_tokens=args.tokens, min_tokens=args.tokens, ignore_eos=True)
        lm.llm.generate(prompts, params, use_tqdm=False)  # warm-up (and the prompts into the prefix cache)
        counter.take()
        start = time.perf_counter()
        lm.llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        steps = counter.take()
        print(f"batch {batch:4d}: {seconds:6.2f} s, {steps} steps, {1000 * seconds / steps:6.2f} ms/step, "
              f"{1e6 * seconds / (steps * batch):7.1f} us per sequence-step")  # fmt: skip
    lm.close()


if __name__ == "__main__":
    main()
