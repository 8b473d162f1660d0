"""``m1-eval demo``: the whole pipeline on an embedded default, in a few minutes on 2 CPU cores.

1. build (or reuse) the tiny Qwen2-style model;
2. evaluate it with the plain ``lm_eval --model m1-vllm`` command and budget forcing on the bundled ``m1_demo``
   task, once per thinking budget (so the report has a budget curve);
3. render the ``m1-report`` folder and print where it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from m1_eval.errors import CommandError

_PERCENT = re.compile(r"m1 generate:\s+(\d+)%")


@dataclass(frozen=True)
class DemoPlan:
    model: Path
    out: Path
    report: Path
    budgets: tuple[int, ...] = (32, 128, 512)
    thinking_n_ignore: int = 1
    temperature: float = 0.7

    def lm_eval_args(self, budget: int) -> list[str]:
        return [
            "--model", "m1-vllm",
            "--model_args", f"pretrained={self.model},max_model_len=2048",
            "--tasks", "m1_demo",
            "--apply_chat_template",
            "--gen_kwargs",
            f"max_tokens_thinking={budget},thinking_n_ignore={self.thinking_n_ignore},"
            f"temperature={self.temperature},max_tokens_answer=64",
            "--output_path", str(self.out / f"budget_{budget}"),
            "--log_samples",
        ]  # fmt: skip


def lm_eval_executable() -> str:
    candidate = Path(sys.executable).with_name("lm_eval")
    return str(candidate) if candidate.exists() else "lm_eval"


def run_lm_eval(args: list[str], log_path: Path, on_percent=None) -> None:
    """Run ``lm_eval`` with ``args``; its output goes to ``log_path``; progress lines feed ``on_percent``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [lm_eval_executable(), *args], stdout=log, stderr=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        assert process.stderr is not None
        tail: list[str] = []
        for chunk in process.stderr:
            log.write(chunk)
            for piece in chunk.split("\r"):
                if (match := _PERCENT.search(piece)) and on_percent is not None:
                    on_percent(int(match.group(1)))
            tail = (tail + [chunk])[-5:]
        code = process.wait()
    if code != 0:
        error_lines = [line for line in tail if line.startswith("lm_eval: error:")]
        detail = error_lines[-1].strip() if error_lines else f"see {log_path}"
        raise CommandError(f"lm_eval exited with code {code}: {detail}")


def run_demo(out: Path, budgets: tuple[int, ...] | None = None, console=None) -> Path:
    """Build the tiny model, evaluate it on ``m1_demo`` once per budget, render the report; return its folder."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from m1_eval.tiny_model import ensure_tiny_model

    console = console or Console(stderr=True)
    out = out.resolve()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        step = progress.add_task("building the tiny model", total=1)
        model = ensure_tiny_model()
        progress.update(step, completed=1)
        plan = DemoPlan(model=model, out=out / "runs", report=out / "report")
        if budgets:
            plan = DemoPlan(model=model, out=out / "runs", report=out / "report", budgets=tuple(budgets))
        for budget in plan.budgets:
            task = progress.add_task(f"lm_eval m1-vllm on m1_demo, thinking budget {budget}", total=100)
            run_lm_eval(
                plan.lm_eval_args(budget),
                plan.out / f"lm_eval_budget_{budget}.log",
                on_percent=lambda pct, task=task: progress.update(task, completed=pct),
            )
            progress.update(task, completed=100)
        step = progress.add_task("rendering the report", total=1)
        render_report(plan)
        progress.update(step, completed=1)
    return plan.report


def render_report(plan: DemoPlan) -> None:
    from m1_reports.cli import main as report_main

    runs = [str(plan.out / f"budget_{budget}") for budget in plan.budgets]
    code = report_main([*runs, "--output_path", str(plan.report), "--baseline", "HuatuoGPT-o1-8B", "-q"])
    if code != 0:
        raise CommandError(f"m1-report exited with code {code}")
