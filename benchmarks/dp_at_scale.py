"""``data_parallel_size=2`` at scale: more requests than the replicas' slots, both schedules, against one engine.

    python benchmarks/dp_at_scale.py [--requests 300] [--max-num-seqs 64]

The forced workload of ``forced_vs_floor`` (seeded sampling, budget 512, 2 ignore rounds), float32, on two
m1-vllm replicas with ``max_num_seqs`` slots each (so requests wait in the parent's queue and ``rounds`` goes in
waves), then on one engine. Prints the times (engine start included in the first data-parallel call) and how
many texts are identical: replicas vs one engine, and ``rounds`` vs ``continuous`` on the replicas. Not a speed
figure on a machine of two cores (two replicas share the cores one engine had); a check that work stealing,
sessions and slots hold at a size the tests do not reach.
"""

from __future__ import annotations

import time

from gen_common import FORCED_GEN_KWARGS, engine_args, instances, parser, questions, tiny_model_path


def generate(lm, prompts: list[str]) -> tuple[list[str], float]:
    from m1_models.records import RecordSink

    lm.record_sink = RecordSink()
    lm.progress_bar = False
    requests = instances(lm, prompts, FORCED_GEN_KWARGS)
    start = time.perf_counter()
    texts = lm.generate_until(requests, disable_tqdm=True)
    return texts, time.perf_counter() - start


def main() -> None:
    p = parser(__doc__, repeats=1)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--max-num-seqs", type=int, default=64)
    args = p.parse_args()
    from m1_models.vllm_model import M1VLLM

    prompts = questions(args.requests)
    common = dict(pretrained=tiny_model_path(), max_model_len=2048, dtype="float32", max_num_seqs=args.max_num_seqs,
                  **engine_args(args))  # fmt: skip
    replicas = M1VLLM(data_parallel_size=2, **common)
    continuous, first = generate(replicas, prompts)
    replicas.schedule = "rounds"
    rounds, in_rounds = generate(replicas, prompts)
    engine = replicas.step_engine()
    print(f"2 replicas: continuous {first:.1f} s (engine start included), rounds {in_rounds:.1f} s; "
          f"steps per replica {engine.steps_per_replica}; slots held after the calls {[r.in_flight for r in engine.replicas]}")  # fmt: skip
    replicas.close()
    one = M1VLLM(**common)
    single, alone = generate(one, prompts)
    one.close()
    n = len(prompts)
    print(f"1 engine: {alone:.1f} s (engine start included)")
    print(f"identical texts: replicas vs one engine {sum(a == b for a, b in zip(continuous, single))}/{n}, "
          f"rounds vs continuous {sum(a == b for a, b in zip(rounds, continuous))}/{n}")  # fmt: skip


if __name__ == "__main__":
    main()
