"""``m1-sweep`` over 5 budgets vs 5 separate ``lm_eval`` runs, engine start included (as a user lives it).

    python benchmarks/sweep_vs_separate.py [--repeats 3] [--limit 100]

Both sides are the real commands in subprocesses on the tiny model: ``m1_medqa`` on a generated MedQA-shaped data
file (``M1_EVAL_DATA``), ``--limit`` documents, chat template, seeded sampling (temperature 0.8), thinking
budgets 32, 64, 128, 256 and 512. The sweep loads the model once and generates all settings' requests together;
the separate runs start ``lm_eval`` (and the engine) five times. The outputs are checked equal per setting.
Prints the ratio (target <= 0.50).
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

BUDGETS = (32, 64, 128, 256, 512)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--limit", type=int, default=100)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    folder = Path(tempfile.mkdtemp(prefix="m1-bench-sweep-"))
    env = {**os.environ, "M1_EVAL_DATA": str(write_data(folder, args.limit)), "TOKENIZERS_PARALLELISM": "false"}
    common = [
        "--model", "m1-vllm", "--model_args", f"pretrained={tiny_model_path()},max_model_len=2048",
        "--tasks", "m1_medqa", "--apply_chat_template", "--limit", str(args.limit), "--seed", "1",
    ]  # fmt: skip

    def run(command: list[str]) -> None:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{command[0]} failed:\n{result.stderr[-3000:]}")

    def sweep() -> None:
        shutil.rmtree(folder / "sweep", ignore_errors=True)
        run([str(bin_dir / "m1-sweep"), *common, "--gen_kwargs", "temperature=0.8,max_tokens_answer=64",
             "--budgets", ",".join(map(str, BUDGETS)), "--output_path", str(folder / "sweep")])  # fmt: skip

    def separate() -> None:
        for budget in BUDGETS:
            out = folder / "separate" / f"budget_{budget}_ignore_0"
            shutil.rmtree(out, ignore_errors=True)
            run([str(bin_dir / "lm_eval"), *common, "--log_samples", "--output_path", str(out), "--gen_kwargs",
                 f"temperature=0.8,max_tokens_answer=64,max_tokens_thinking={budget},thinking_n_ignore=0"])  # fmt: skip

    timings = alternate({"m1-sweep (1 load)": sweep, "5 x lm_eval": separate}, args.repeats)
    for budget in BUDGETS:  # the same outputs either way
        name = f"budget_{budget}_ignore_0"
        a, b = ([json.loads(line)["resps"] for line in next((folder / side / name).glob("*/samples_*.jsonl")).open()]
                for side in ("sweep", "separate"))  # fmt: skip
        if sorted(map(str, a)) != sorted(map(str, b)):
            raise SystemExit(f"{name}: the sweep's responses differ from the separate run's")
    print(f"settings: {len(BUDGETS)} budgets x {args.limit} documents; responses identical per setting")
    print(timings.describe("m1-sweep (1 load)"))
    print(timings.describe("5 x lm_eval"))
    print(result_line("sweep_vs_separate", timings.median("m1-sweep (1 load)") / timings.median("5 x lm_eval"), 0.50))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
