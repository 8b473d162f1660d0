"""The ``m1-eval`` command: project utilities around lm-eval (the evaluation itself is ``lm_eval``).

Where a command takes what an ``lm_eval`` flag takes, lm-eval's names work too: ``-o``/``--output_path`` for the
output folder (our ``--out`` and ``--path`` stay as aliases) and ``-v``/``--verbosity`` (before or after the
command name).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from m1_base import values
from m1_base.errors import M1UserError

EPILOG = """examples:
  m1-eval demo                            test-time scaling of a tiny model: m1-sweep + m1-report, ~3 minutes
  m1-eval demo -o ./demo --budgets 8,32,128
  m1-eval doctor                          versions, plugin hook, registered tasks and models, data source
  m1-eval tiny-model                      build (once) and print the folder of the tiny test model
  m1-eval tiny-model -o ./tiny            build it into ./tiny
"""

VERBOSITY_FLAGS = ("-v", "--verbosity")  # lm_eval's names
VERBOSITY_HELP = "logging level: DEBUG, INFO (default), WARNING, ERROR; DEBUG shows tracebacks"


def _budgets(raw: str | None) -> tuple[int, ...] | None:
    if not raw:
        return None
    flag = values.Source("", M1UserError)
    hint = "comma-separated thinking budgets in tokens, e.g. --budgets 64,256"
    return tuple(values.token_count(b.strip(), "--budgets", flag, hint=hint) for b in raw.split(","))  # type: ignore[misc]


def _output_folder(raw: str, flag: str, *, parent_only: bool = False) -> Path:
    """The folder a command writes into, created now (or its parent, when the command renames a finished build
    into place) so that an unusable path is a one-line error up front."""
    folder = Path(raw).expanduser()
    try:
        (folder.parent if parent_only else folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise M1UserError(f"{flag} {raw}: cannot create the folder ({error.strerror}); choose another {flag}") from None
    return folder


def _demo(args: argparse.Namespace) -> int:
    from m1_eval.demo import run_demo

    budgets = _budgets(args.budgets)
    out = _output_folder(args.out, "-o/--output_path")
    engine_log = None if getattr(args, "verbosity", None) else out.resolve() / "engine.log"  # -v: vLLM's lines on the terminal
    report = run_demo(out, budgets, engine_log=engine_log)
    print(f"report: {report / 'index.html'}")
    print(f"tables: {report / 'table1.md'}  runs: {Path(args.out).resolve() / 'runs'}")
    if engine_log is not None and engine_log.exists():
        print(f"vLLM's own log (its expected warnings, e.g. on chunked prefill, which m1-vllm turns off on CPU): "
              f"{engine_log}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from m1_eval.doctor import run_checks

    checks = run_checks()
    table = Table(title="m1-eval doctor", show_header=True)
    table.add_column("check")
    table.add_column("")
    table.add_column("finding", overflow="fold")
    for check in checks:
        mark = "[red]!![/]" if not check.ok else "[yellow]![/]" if check.warning else "[green]ok[/]"
        table.add_row(check.name, mark, check.value)
    Console().print(table)
    return 0 if all(check.ok for check in checks) else 1


def _tiny_model(args: argparse.Namespace) -> int:
    from m1_eval.tiny_model import ensure_tiny_model

    folder = _output_folder(args.path, "-o/--output_path", parent_only=True) if args.path else None
    print(ensure_tiny_model(folder))
    return 0


def _add_verbosity(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``-v``/``--verbosity`` on the main parser and, without a default of their own, on every command."""
    parser.add_argument(
        *VERBOSITY_FLAGS, dest="verbosity", default=default if default else argparse.SUPPRESS, help=VERBOSITY_HELP
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m1-eval",
        description="m1-eval utilities: the tiny test model, and more.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbosity(parser, None)  # not given: INFO for our lines (and the demo keeps vLLM's in a log file)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="test-time scaling on a tiny model: budget forcing sweep on the bundled m1_demo_chain task, and a report",
        description="The whole pipeline on an embedded default, in about 3 minutes on 2 CPU cores: build the "
        "demo model (a tiny Qwen2 chat model trained in about a minute to answer the bundled m1_demo_chain task "
        "by following its chain of ward transfers in its thinking; cached), run m1-sweep (m1-vllm, one model "
        "load, greedy) with budget forcing on m1_demo_chain (100 questions of 2-22 steps) at every thinking "
        "budget with 0 and 1 'Wait' rounds (one lm-eval output folder per setting under <out>/runs/), then "
        "render the m1-report folder (protocol header, tables, budget curves, sample browser) and print where "
        "it is. The report shows what the m1 paper is about: accuracy rises with the thinking budget, and a "
        "'Wait' round helps where the model stopped thinking too early.",
        epilog="examples:\n  m1-eval demo\n  m1-eval demo -o /tmp/m1-demo --budgets 8,32,128",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "-o", "--output_path", "--out", dest="out", metavar="DIR", default="m1-demo",
        help="output folder (default: ./m1-demo)",
    )
    demo.add_argument("--budgets", help="comma-separated thinking budgets in tokens (default: 4,8,16,32,64)")
    _add_verbosity(demo, None)
    demo.set_defaults(run=_demo)
    doctor = commands.add_parser(
        "doctor",
        help="print versions, whether the plugin hook is active, registered tasks/models, the data source",
        description="Check this installation: versions (lm-eval, vLLM flavour, torch, transformers), whether "
        "the lm-eval plugin hook is active, which m1 tasks and models lm-eval sees, and where the evaluation "
        "data would come from. Exit code 1 when something needs fixing.",
        epilog="example:\n  m1-eval doctor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_verbosity(doctor, None)
    doctor.set_defaults(run=_doctor)
    tiny = commands.add_parser(
        "tiny-model",
        help="build the tiny Qwen2-style test model (cached) and print its folder",
        description="Build the tiny Qwen2-architecture chat model used by the tests and the demo (about a "
        "minute on 2 CPU cores, cached under $M1_EVAL_CACHE or ~/.cache/m1-eval) and print its folder.",
        epilog="example:\n  m1-eval tiny-model -o ./tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tiny.add_argument(
        "-o", "--output_path", "--path", dest="path", metavar="DIR", help="build into this folder instead of the cache"
    )
    _add_verbosity(tiny, None)
    tiny.set_defaults(run=_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = getattr(args, "verbosity", None)
    level = (given or "INFO").upper()
    quiet_demo = args.command == "demo" and not given  # the demo's terminal: its own lines, and problems
    logging.basicConfig(level="WARNING" if quiet_demo else level, format="%(levelname)s %(name)s: %(message)s")
    if quiet_demo:
        logging.getLogger("m1_eval").setLevel(logging.INFO)  # the demo model's build progress
    try:
        return args.run(args)
    except M1UserError as error:
        if level == "DEBUG":
            raise
        print(f"m1-eval: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
