"""What the plugin adds to a plain engine call: ``m1-vllm`` without forcing through lm-eval vs ``LLM.generate``.

    python benchmarks/plugin_overhead.py [--repeats 3] [--requests 1273] [--max-tokens 256]

One engine (started before any timing). One side is lm-eval's ``simple_evaluate`` with the m1-vllm model on the
``m1_medqa`` task (a generated data file of ``--requests`` MedQA-shaped records through ``M1_EVAL_DATA``; 1273 is
MedQA's size), no budget forcing (one generation per request, as the paper's baselines run; greedy, the task's
default, with ``max_gen_toks`` lowered to ``--max-tokens``): task building, the paper's prompt and chat template,
requests, the controller, the cache hook, the records and the m1 scorer included. The other side is
``vllm.LLM.generate`` on the same chat-formatted prompts with the same sampling. Prints the ratio (target
<= 1.05).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from gen_common import engine_args, alternate, parser, result_line, start_lm, write_data


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=1273)
    p.add_argument("--max-tokens", type=int, default=256)
    args = p.parse_args()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from vllm import SamplingParams

    folder = Path(tempfile.mkdtemp(prefix="m1-bench-"))
    os.environ["M1_EVAL_DATA"] = str(write_data(folder, args.requests))
    lm = start_lm(**engine_args(args))
    manager = TaskManager()
    task = manager.load(["m1_medqa"])["tasks"]["m1_medqa"]
    docs = list(task.test_docs())
    contexts = [lm.apply_chat_template([{"role": "user", "content": task.doc_to_text(d)}]) for d in docs]
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, skip_special_tokens=False,
                            spaces_between_special_tokens=False)  # fmt: skip
    token_prompts = [{"prompt_token_ids": lm.tokenizer.encode(c)} for c in contexts]
    texts: dict[str, list[str]] = {}

    def through_lm_eval() -> None:
        results = simple_evaluate(model=lm, tasks=["m1_medqa"], task_manager=manager, apply_chat_template=True,
                                  gen_kwargs={"max_gen_toks": args.max_tokens}, log_samples=True)  # fmt: skip
        texts["lm_eval"] = [s["resps"][0][0] for s in sorted(results["samples"]["m1_medqa"],
                                                             key=lambda s: s["doc_id"])]  # fmt: skip

    def plain_engine() -> None:
        outputs = lm.llm.generate(token_prompts, params, use_tqdm=False)
        texts["vllm"] = [o.outputs[0].text for o in outputs]

    through_lm_eval()  # warm-up: dataset cache, engine
    timings = alternate({"lm_eval m1-vllm": through_lm_eval, "vllm LLM.generate": plain_engine}, args.repeats)
    same = sum(a == b for a, b in zip(texts["lm_eval"], texts["vllm"], strict=True))
    print(f"requests: {len(docs)}, max_tokens {args.max_tokens}, identical texts: {same}/{len(docs)}")
    print(timings.describe("lm_eval m1-vllm"))
    print(timings.describe("vllm LLM.generate"))
    ratio = timings.median("lm_eval m1-vllm") / timings.median("vllm LLM.generate")
    print(result_line("plugin_overhead", ratio, 1.05))
    lm.close()


if __name__ == "__main__":
    main()
