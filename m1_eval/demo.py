"""``m1-eval demo``: the whole pipeline on an embedded default, in a few minutes on 2 CPU cores.

1. build (or reuse) the demo model (:mod:`m1_eval.demo_model`: a tiny Qwen2 chat model trained to answer the
   bundled ``m1_demo_chain`` task by following its chain of transfers in its thinking, about a minute);
2. evaluate it with ``m1-sweep`` (one model load, greedy) and budget forcing on ``m1_demo_chain`` at every
   thinking budget, with and without a "Wait" round; each setting is a standard lm-eval output folder;
3. render the ``m1-report`` folder and print where it is.

The report shows test-time scaling: accuracy rises with the thinking budget (a longer chain needs more thinking
tokens; cut short, the model guesses), and a "Wait" round raises it where the model stopped thinking too early.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from m1_base.errors import CommandError


@dataclass(frozen=True)
class DemoPlan:
    model: Path
    out: Path
    report: Path
    budgets: tuple[int, ...] = (4, 8, 16, 32, 64)
    ignores: tuple[int, ...] = (0, 1)
    task: str = "m1_demo_chain"

    def sweep_args(self) -> list[str]:
        return [
            "--model", "m1-vllm",
            "--model_args", f"pretrained={self.model},max_model_len=2048",
            "--tasks", self.task,
            "--apply_chat_template",  # greedy: the task's do_sample: false
            "--budgets", ",".join(map(str, self.budgets)),
            "--ignores", ",".join(map(str, self.ignores)),
            "--output_path", str(self.out),
            "--use_cache", str(self.out / "cache"),
        ]  # fmt: skip


def run_demo(out: Path, budgets: tuple[int, ...] | None = None, console=None) -> Path:
    """Build the demo model, sweep it on ``m1_demo_chain`` over the budgets (one load), render the report."""
    from rich.console import Console

    from m1_eval.demo_model import ensure_demo_model
    from m1_eval.sweep import sweep

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's start-up chatter; errors still show
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    console = console or Console(stderr=True)
    out = out.resolve()
    with console.status("building (or reusing) the demo model (about a minute the first time)"):
        model = ensure_demo_model()
    plan = DemoPlan(model=model, out=out / "runs", report=out / "report")
    if budgets:
        plan = DemoPlan(model=model, out=out / "runs", report=out / "report", budgets=tuple(budgets))
    console.print(f"m1-sweep on {plan.task}: budgets {', '.join(map(str, plan.budgets))} x 'Wait' rounds "
                  f"{', '.join(map(str, plan.ignores))}, one model load")  # fmt: skip
    folders = sweep(plan.sweep_args(), console)
    with console.status("rendering the report"):
        render_report(plan, folders)
    return plan.report


def render_report(plan: DemoPlan, folders: list[Path]) -> None:
    from m1_reports.cli import main as report_main

    runs = [str(folder) for folder in folders]
    code = report_main([*runs, "--output_path", str(plan.report), "--baseline", "HuatuoGPT-o1-8B", "-q"])
    if code != 0:
        raise CommandError(f"m1-report exited with code {code}")
