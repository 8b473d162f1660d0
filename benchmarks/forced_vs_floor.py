"""Budget-forced generation vs the engine's own floor: one plain generate of the same per-request token counts.

    python benchmarks/forced_vs_floor.py [--repeats 3] [--requests 256]

The forced side is m1-vllm's ``generate_until`` (``continuous`` schedule, thinking budget 512, 2 ignore rounds,
seeded sampling): every ignore round and the answer are continuations that re-submit prompt + generated ids.
The floor is ONE ``vllm.LLM.generate`` call over the same prompts in which request i generates exactly as many
tokens as the forced run generated for it (``min_tokens = max_tokens = n_i``, ``ignore_eos``): the cost of the
tokens without the forcing. Prints the ratio (target <= 1.10).
"""

from __future__ import annotations

from gen_common import engine_args, FORCED_GEN_KWARGS, alternate, instances, parser, questions, result_line, start_lm

GEN_KWARGS = FORCED_GEN_KWARGS


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=256)
    args = p.parse_args()
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from m1_models.records import RecordSink

    lm = start_lm(**engine_args(args))
    requests = instances(lm, questions(args.requests), GEN_KWARGS)

    class Keep(RecordSink):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[dict] = []

        def add(self, record: dict) -> None:
            self.records.append(record)

    keep = Keep()
    lm.record_sink = keep
    lm.generate_until(requests, disable_tqdm=True)  # warm-up, and the per-request token counts
    by_doc = {r["doc_id"]: r for r in keep.records}
    prompts, params = [], []
    wait = len(lm.tokenizer.encode("Wait"))
    generated = 0
    for request in requests:
        record = by_doc[request.doc_id]
        # tokens the model generated: thinking minus the appended "Wait"s, plus the answer
        n = max(1, record["thinking_tokens"] - record["ignore_rounds"] * wait + record["answer_tokens"])
        generated += n
        prompts.append(TokensPrompt(prompt_token_ids=lm.tokenizer.encode(request.args[0])))
        params.append(SamplingParams(temperature=GEN_KWARGS["temperature"], seed=request.doc_id, max_tokens=n, min_tokens=n,
                                     ignore_eos=True))  # fmt: skip
    print(f"requests: {len(requests)}, generated tokens: {generated}, "
          f"ignore rounds used: {sum(r['ignore_rounds'] for r in keep.records)}")  # fmt: skip

    def forced() -> None:
        lm.generate_until(requests, disable_tqdm=True)

    def floor() -> None:
        lm.llm.generate(prompts, params, use_tqdm=False)

    timings = alternate({"forced": forced, "floor": floor}, args.repeats)
    print(timings.describe("forced"))
    print(timings.describe("floor"))
    print(result_line("forced_vs_floor", timings.median("forced") / timings.median("floor"), 1.10))
    lm.close()


if __name__ == "__main__":
    main()
