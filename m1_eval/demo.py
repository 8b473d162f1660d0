"""``m1-eval demo``: the whole pipeline on an embedded default, in a few minutes on 2 CPU cores.

1. build (or reuse) the demo model (:mod:`m1_eval.demo_model`: a tiny Qwen2 chat model trained to answer the
   bundled ``m1_demo_chain`` task by following its chain of transfers in its thinking, about a minute);
2. evaluate it with ``m1-sweep`` (one model load, greedy) and budget forcing on ``m1_demo_chain`` at every
   thinking budget, with and without a "Wait" round (nested: the settings share what they generate in common);
   each setting is a standard lm-eval output folder;
3. sweep it again with parallel samples: :attr:`DemoPlan.repeats` sampled answers per question (temperature
   :attr:`DemoPlan.temperature`) at the budgets of :attr:`DemoPlan.repeat_budgets`, scored by majority vote
   (``maj@k``) and ``pass@k``;
4. render the ``m1-report`` folder and print where it is.

The report shows test-time scaling on both axes, accuracy against tokens spent (the frontier): accuracy rises with
the thinking budget (a longer chain needs more thinking tokens; cut short, the model guesses), a "Wait" round
raises it where the model stopped thinking too early, and a majority of k samples trades tokens for accuracy the
other way.
"""

from __future__ import annotations

import contextlib
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
    repeats: int = 4  # the parallel axis: samples per question (0: none)
    repeat_budgets: tuple[int, ...] = (8, 16)
    temperature: float = 0.8

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

    @property
    def samples_out(self) -> Path:
        return self.out / f"samples_k{self.repeats}"

    def repeat_args(self) -> list[str]:
        """The parallel-samples sweep: ``repeats`` sampled answers per question at ``repeat_budgets``."""
        return [
            "--model", "m1-vllm",
            "--model_args", f"pretrained={self.model},max_model_len=2048",
            "--tasks", self.task,
            "--apply_chat_template",
            "--budgets", ",".join(map(str, self.repeat_budgets)),
            "--repeats", str(self.repeats),
            "--gen_kwargs", f"temperature={self.temperature}",
            "--output_path", str(self.samples_out),
            "--use_cache", str(self.out / "cache_samples"),
        ]  # fmt: skip


def run_demo(
    out: Path, budgets: tuple[int, ...] | None = None, console=None, engine_log: Path | None = None
) -> Path:
    """Build the demo model, sweep it on ``m1_demo_chain`` over the budgets (one load), render the report.

    ``engine_log``: vLLM's own log lines (its start-up and the warnings m1-vllm expects and handles, e.g. on
    turning chunked prefill off on CPU) go to this file instead of the terminal; None keeps them there."""
    from rich.console import Console

    from m1_eval.demo_model import ensure_demo_model
    from m1_eval.sweep import sweep

    if engine_log is not None:
        route_vllm_logs(engine_log)
    else:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's start-up chatter; errors still show
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if engine_log is not None:
        os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' and lm-eval's bars; the demo shows its own
    console = console or Console(stderr=True)
    out = out.resolve()
    with console.status("building (or reusing) the demo model (about a minute the first time)"):
        model = ensure_demo_model()
    plan = DemoPlan(model=model, out=out / "runs", report=out / "report")
    if budgets:
        plan = DemoPlan(model=model, out=out / "runs", report=out / "report", budgets=tuple(budgets))
    console.print(f"m1-sweep on {plan.task}: budgets {', '.join(map(str, plan.budgets))} x 'Wait' rounds "
                  f"{', '.join(map(str, plan.ignores))}, one model load")  # fmt: skip
    commands = [plan.sweep_args()]
    if plan.repeats:
        console.print(f"m1-sweep on {plan.task}: {plan.repeats} samples per question (temperature "
                      f"{plan.temperature}) at budgets {', '.join(map(str, plan.repeat_budgets))}")  # fmt: skip
        commands.append(plan.repeat_args())
    folders: list[Path] = []
    for command in commands:
        if engine_log is None:
            folders += sweep(command, console)
        else:
            with stderr_to(engine_log) as terminal:  # the engine's processes inherit the log as their stderr
                folders += sweep(command, Console(file=terminal))
    with console.status("rendering the report"):
        render_report(plan, folders)
    return plan.report


@contextlib.contextmanager
def stderr_to(path: Path):
    """File descriptor 2 goes to ``path`` (appended) for the block, so that what the engine's worker processes
    print to stderr themselves (library warnings, C++ warnings, load progress) lands there; the block gets the
    terminal as a text stream, and this process's logging handlers keep writing to the terminal."""
    import logging
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    handlers = [
        h for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.__stderr__)
    ]  # fmt: skip
    log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for handler in handlers:
        handler.setStream(terminal)
    os.dup2(log_fd, 2)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log_fd)
        for handler in handlers:
            handler.setStream(sys.stderr)
        terminal.close()


def route_vllm_logs(path: Path) -> None:
    """vLLM's loggers (this process and its engine-core process, which inherits the environment) write to
    ``path`` instead of stderr, through vLLM's own ``VLLM_LOGGING_CONFIG_PATH`` (a ``logging.dictConfig`` file).
    Only before vLLM is imported; a user's own logging config is left alone."""
    import json
    import sys

    if "vllm" in sys.modules or os.environ.get("VLLM_LOGGING_CONFIG_PATH"):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")  # this run's lines only
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(process)d %(name)s: %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "mode": "a", "formatter": "plain"}
        },
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config_file = path.with_suffix(".logging.json")
    config_file.write_text(json.dumps(config))
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_file)  # the engine's processes, and this one once
    # vLLM configures its logging (lines logged before that, e.g. while m1-vllm reads the model's config, would
    # reach the terminal)
    import logging.config

    logging.config.dictConfig(config)


def render_report(plan: DemoPlan, folders: list[Path]) -> None:
    from m1_reports.cli import main as report_main

    runs = [str(folder) for folder in folders]
    code = report_main([*runs, "--output_path", str(plan.report), "--baseline", "HuatuoGPT-o1-8B", "-q"])
    if code != 0:
        raise CommandError(f"m1-report exited with code {code}")
