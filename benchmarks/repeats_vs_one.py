"""K = 8 samples per question in one run (lm-eval's repeats) vs 8 separate runs of one sample each.

    python benchmarks/repeats_vs_one.py [--repeats 1] [--limit 32]

Both sides are the real ``lm_eval`` command in subprocesses on the tiny model, engine start included (as a user
lives it): ``m1_medqa`` on a generated MedQA-shaped data file (``M1_EVAL_DATA``), ``--limit`` documents, chat
template, thinking budget 256, answers capped at 64 tokens, temperature 0.8.  One side runs ``m1_medqa_k8`` once
(8 samples per question, each with its own seed; the prompt is prefilled once and its KV shared by the engine's
prefix cache; maj@k, pass@k and avg@k in its results); the other runs ``m1_medqa`` 8 times with model seeds
0 ... 7.  Prints the ratio of wall times (target <= 0.60) and both runs' accuracies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gen_common import alternate, parser, result_line, tiny_model_path, write_data

K = 8
GEN_KWARGS = "temperature=0.8,max_tokens_thinking=256,max_tokens_answer=64"


def main() -> None:
    p = parser(__doc__, repeats=1)
    p.add_argument("--limit", type=int, default=32)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    folder = Path(tempfile.mkdtemp(prefix="m1-bench-repeats-"))
    env = {**os.environ, "M1_EVAL_DATA": str(write_data(folder, args.limit)), "TOKENIZERS_PARALLELISM": "false"}
    model = f"pretrained={tiny_model_path()},max_model_len=2048"
    common = ["--apply_chat_template", "--limit", str(args.limit), "--gen_kwargs", GEN_KWARGS, "--log_samples"]

    def run(command: list[str]) -> None:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{command[0]} failed:\n{result.stderr[-3000:]}")

    def repeated() -> None:
        shutil.rmtree(folder / "k8", ignore_errors=True)
        run([str(bin_dir / "lm_eval"), "--model", "m1-vllm", "--model_args", model, "--tasks", "m1_medqa_k8",
             *common, "--output_path", str(folder / "k8")])  # fmt: skip

    def separate() -> None:
        for seed in range(K):
            out = folder / "separate" / f"seed_{seed}"
            shutil.rmtree(out, ignore_errors=True)
            run([str(bin_dir / "lm_eval"), "--model", "m1-vllm", "--model_args", f"{model},seed={seed}",
                 "--tasks", "m1_medqa", *common, "--output_path", str(out)])  # fmt: skip

    timings = alternate({"1 x lm_eval m1_medqa_k8": repeated, "8 x lm_eval m1_medqa": separate}, args.repeats)
    results = json.loads(next((folder / "k8").glob("*/results_*.json")).read_text())["results"]["m1_medqa_k8"]
    alone = [
        json.loads(next(path.glob("*/results_*.json")).read_text())["results"]["m1_medqa"]["acc,none"]
        for path in sorted((folder / "separate").iterdir())
    ]
    metrics = ", ".join(f"{name.split(',')[0]} {results[name]:.3f}" for name in sorted(results) if "@" in name
                        and "stderr" not in name and name.split(",")[0].split("@")[1] in ("1", "4", "8"))  # fmt: skip
    print(f"{args.limit} questions x {K} samples; k8 run: acc {results['acc,none']:.3f}, {metrics}; "
          f"separate runs' acc: {', '.join(f'{a:.3f}' for a in alone)}")
    print(timings.describe("1 x lm_eval m1_medqa_k8"))
    print(timings.describe("8 x lm_eval m1_medqa"))
    ratio = timings.median("1 x lm_eval m1_medqa_k8") / timings.median("8 x lm_eval m1_medqa")
    print(result_line("repeats_vs_one", ratio, 0.60))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
