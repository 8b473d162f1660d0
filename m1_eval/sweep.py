"""``m1-sweep``: one model load for a whole thinking-budget study (the m1 paper's central experiment).

The paper evaluates one model at thinking budgets 128 ... 8192 and 0 ... 8 "Wait" rounds, every setting a full
run of the suite; its scripts load the model once per setting.  Here the model is loaded once and the requests
of ALL settings are generated together, in one call to the budget-forcing controller (their prompts share
prefixes, and a request whose phase ends moves on at once, whatever setting it belongs to).  Each setting is
then written as its own standard lm-eval output folder, so ``m1-report`` reads a sweep like separate runs:

1. *collect*: lm-eval's own ``simple_evaluate`` runs every setting against a collecting model that records the
   requests lm-eval builds (task configs, chat template, ``--limit``, ``--gen_kwargs`` merged exactly as in a
   normal run) and answers nothing;
2. *generate*: the real model (behind lm-eval's ``CachingLM`` with ``--use_cache``) generates the union of the
   requests once; the m1 records are captured per request;
3. *write*: ``simple_evaluate`` runs every setting again against a replaying model that answers from step 2
   (and re-emits each request's record), and lm-eval's ``EvaluationTracker`` writes results, samples and
   records into ``<output_path>/budget_<B>_ignore_<N>/``, first into a hidden folder renamed into place when
   complete.  A setting whose folder exists is skipped, so a killed sweep resumes (with ``--use_cache`` the
   requests generated before the kill are not generated again).

The command line is lm-eval's own ``run`` parser (every lm-eval flag keeps its name and meaning) plus
``--budgets`` and ``--ignores``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m1_base import values
from m1_base.errors import M1UserError, SweepError

logger = logging.getLogger("m1_eval.sweep")

_FLAG = values.Source("", SweepError)  # messages read "--budgets 'x' must be ..."

EPILOG = """examples:
  m1-sweep --model m1-vllm --model_args pretrained=UCSC-VLAA/m1-7B-23K --tasks m1_table1 --apply_chat_template \\
           --budgets 512,1024,2048,4096 --ignores 0,1,2 --output_path out/sweep --use_cache out/sweep/cache
  m1-sweep --model m1-vllm --model_args pretrained=./tiny --tasks m1_demo --apply_chat_template \\
           --budgets none,32,128,512 --gen_kwargs temperature=0.7 --limit 10 -o out/demo-sweep
  m1-sweep --model m1-vllm --model_args pretrained=./tiny --tasks m1_demo --apply_chat_template \
           --budgets 16,64 --ignores 0,1 --repeats 8 --gen_kwargs temperature=0.6 -o out/k8-sweep
  m1-report out/sweep/*                      # every setting is a standard lm-eval output folder

--budgets: thinking budgets (max_tokens_thinking), comma-separated; "none" = no forcing (a plain run).
--ignores: "Wait" rounds (thinking_n_ignore), comma-separated (default 0); one setting per budget x ignores.
--repeats: K samples per question and setting, each with its own seed (needs a temperature above 0); the results
           hold maj@k, pass@k and avg@k for every k <= K.  Settings share what they generate in common: a
           setting's thinking is cut from a larger budget's, so the sweep costs little more than its largest.
"""


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: a thinking budget (None = no forcing) and a number of ignore rounds."""

    budget: int | None
    ignore: int

    @property
    def name(self) -> str:
        return f"budget_{'none' if self.budget is None else self.budget}_ignore_{self.ignore}"

    def gen_kwargs(self, base: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(base)
        if self.budget is not None:
            kwargs["max_tokens_thinking"] = self.budget
            kwargs["thinking_n_ignore"] = self.ignore
        return kwargs


def parse_settings(budgets: str, ignores: str = "0") -> list[Setting]:
    """``"512,1024"`` x ``"0,2"`` -> settings, in that order; "none" is a run without forcing (ignores do not apply)."""
    chosen: list[int | None] = []
    for raw in (piece.strip() for piece in str(budgets).split(",")):
        if raw.lower() in ("none", "off"):
            chosen.append(None)
            continue
        chosen.append(
            values.token_count(raw, "--budgets", _FLAG, hint="thinking budgets in tokens, e.g. 512,1024 (or none)")
        )
    rounds = [
        values.whole(raw.strip(), "--ignores", _FLAG, minimum=0, maximum=1000, hint="'Wait' rounds, e.g. 0,1,2")
        for raw in str(ignores).split(",")
    ]
    settings: list[Setting] = []
    for budget, ignore in itertools.product(chosen, rounds):
        setting = Setting(budget, 0 if budget is None else ignore)
        if setting not in settings:
            settings.append(setting)
    return settings


def parse_repeats(raw: Any) -> int:
    """``--repeats K``: a whole number of samples per question and setting, 1 ... 1024."""
    return values.whole(raw, "--repeats", _FLAG, minimum=1, maximum=1024, hint="samples per question, e.g. 8")


def check_sampled(gen_kwargs: dict[str, Any], repeats: int) -> None:
    """K samples of a greedy run are K copies of one: ``--repeats`` needs a temperature above 0."""
    temperature = gen_kwargs.get("temperature")
    try:
        sampled = temperature is not None and float(temperature) > 0
    except (TypeError, ValueError):
        sampled = True  # the model's own check names a bad temperature
    if not sampled:
        raise SweepError(
            f"--repeats {repeats} with greedy decoding gives {repeats} identical samples; add --gen_kwargs "
            f"temperature=0.6 (or another value above 0) so that each sample is drawn with its own seed"
        )


def check_output_folder(folder: Path) -> None:
    """The sweep's ``-o`` folder can be created and written: checked before the model loads (a setting's folder
    is renamed into it only after all generation)."""
    if folder.exists() and not folder.is_dir():
        raise SweepError(f"-o/--output_path {folder} is a file, not a folder; choose a folder for the settings")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".m1-sweep-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or str(error)
        raise SweepError(
            f"-o/--output_path {folder} cannot be written ({reason}); choose a folder you can write"
        ) from None


def is_complete(folder: Path) -> bool:
    """A setting's folder holds an lm-eval results file (it is renamed into place only when complete)."""
    return folder.is_dir() and any(folder.glob("*/results_*.json"))


# ---------------------------------------------------------------------------------------- the three models


def _lm_base():
    from lm_eval.api.model import LM

    return LM


class _Delegating:
    """The chat-template interface of the real model, shared by the collecting and replaying models."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm

    @property
    def tokenizer_name(self) -> str:
        return self.lm.tokenizer_name

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.lm.chat_template(chat_template)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.lm.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    def loglikelihood(self, requests):
        return self.lm.loglikelihood(requests)

    def loglikelihood_rolling(self, requests):
        return self.lm.loglikelihood_rolling(requests)


def _collector(lm: Any):
    class Collector(_Delegating, _lm_base()):
        """Records the generate_until requests lm-eval builds; answers nothing (its scores are discarded)."""

        def __init__(self, lm: Any) -> None:
            super().__init__(lm)
            self.requests: list[Any] = []

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            self.requests.extend(requests)
            return [""] * len(requests)

    return Collector(lm)


def _replayer(lm: Any, texts: dict[str, str], records: dict[str, dict[str, Any]], store: Any):
    from lm_eval.utils import hash_string

    from m1_models.records import SINK, number_repeats, request_hash

    class Replayer(_Delegating, _lm_base()):
        """Answers from the sweep's generation and re-emits each request's m1 record for lm-eval's writer."""

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            out = []
            for request, numbered in zip(requests, number_repeats(list(requests)), strict=True):
                key = request_hash(*numbered.args)
                out.append(texts[key])
                record = records.get(key) or store.recover(request.task_name, key)
                if record is not None:
                    SINK.add({**record, "task": request.task_name, "doc_id": request.doc_id,
                              "prompt_hash": hash_string(request.args[0])})  # fmt: skip
            return out

    return Replayer(lm)


# ------------------------------------------------------------------------------------------------ the sweep


@dataclass
class SweepPlan:
    cfg: Any  # lm-eval's EvaluatorConfig
    settings: list[Setting]
    output_path: Path
    task_manager: Any = None  # lm-eval's TaskManager, built once from the config
    chat_template: str | None = None  # the model's template when --apply_chat_template (recorded as lm_eval does)

    def folder(self, setting: Setting) -> Path:
        return self.output_path / setting.name


def _evaluate(plan: SweepPlan, setting: Setting, model: Any, **overrides: Any) -> dict[str, Any] | None:
    from lm_eval import simple_evaluate

    cfg = plan.cfg
    seed = cfg.seed or [None, None, None, None]
    kwargs: dict[str, Any] = dict(
        model=model,
        model_args=cfg.model_args,
        tasks=cfg.tasks,
        num_fewshot=cfg.num_fewshot,
        limit=cfg.limit,
        samples=cfg.samples,
        log_samples=cfg.log_samples,
        system_instruction=cfg.system_instruction,
        apply_chat_template=cfg.apply_chat_template,
        fewshot_as_multiturn=cfg.fewshot_as_multiturn,
        gen_kwargs=setting.gen_kwargs(cfg.gen_kwargs or {}),
        task_manager=plan.task_manager,
        random_seed=seed[0],
        numpy_random_seed=seed[1],
        torch_random_seed=seed[2],
        fewshot_random_seed=seed[3],
        metadata=cfg.metadata,
    )
    kwargs.update(overrides)
    return simple_evaluate(**kwargs)


def _write(plan: SweepPlan, setting: Setting, results: dict[str, Any], tmp: Path) -> None:
    """Save one setting as ``lm_eval --output_path`` would, into ``tmp``."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp))
    # the tracker learns the model folder name from model_args, as in a CLI run
    tracker.general_config_tracker.log_experiment_args(
        model_source=plan.cfg.model,
        model_args=plan.cfg.model_args,
        system_instruction=plan.cfg.system_instruction,
        chat_template=plan.chat_template,
        fewshot_as_multiturn=plan.cfg.fewshot_as_multiturn,
    )
    samples = results.pop("samples", None)
    results["config"]["model"] = plan.cfg.model
    results["config"]["m1_sweep"] = {
        "budget": setting.budget,
        "thinking_n_ignore": setting.ignore,
        "settings": [s.name for s in plan.settings],
    }
    tracker.save_results_aggregated(results=results, samples=samples if plan.cfg.log_samples else None)
    if plan.cfg.log_samples and samples is not None:
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])


def run_sweep(plan: SweepPlan, console: Any = None) -> list[Path]:
    """Generate and write every setting not yet on disk; returns the settings' folders."""
    from lm_eval.api.registry import get_model
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from m1_models.lm_eval_model import M1LM
    from m1_models.records import RecordSink, number_repeats, request_hash

    cfg = plan.cfg
    todo = [s for s in plan.settings if not is_complete(plan.folder(s))]
    for setting in plan.settings:
        if setting not in todo:
            logger.warning("m1-sweep: %s is already in %s: skipped", setting.name, plan.folder(setting))
        elif plan.folder(setting).exists():
            raise SweepError(
                f"{plan.folder(setting)} exists but holds no lm-eval results; remove it (or choose another "
                f"--output_path) and run the sweep again"
            )
    if not todo:
        return [plan.folder(s) for s in plan.settings]

    lm = get_model(cfg.model).create_from_arg_obj(
        cfg.model_args, {"batch_size": cfg.batch_size, "max_batch_size": cfg.max_batch_size, "device": cfg.device}
    )
    if not isinstance(lm, M1LM):
        raise SweepError(f"--model {cfg.model} is not an m1 model; m1-sweep drives budget forcing: use --model m1-vllm")
    plan.chat_template = lm.chat_template(cfg.apply_chat_template) if cfg.apply_chat_template else None

    # 1. collect every setting's requests, exactly as lm-eval builds them
    collector = _collector(lm)
    by_setting: dict[Setting, list[str]] = {}
    unique: dict[str, Any] = {}
    for setting in todo:
        collector.requests = []
        _evaluate(plan, setting, collector, log_samples=False, bootstrap_iters=0)
        numbered = number_repeats(collector.requests)  # lm-eval's repeats: each sample its own request
        by_setting[setting] = [request_hash(*r.args) for r in numbered]
        for request, key in zip(numbered, by_setting[setting], strict=True):
            unique.setdefault(key, request)
    owners: dict[str, list[Setting]] = defaultdict(list)
    for setting, keys in by_setting.items():
        for key in keys:
            owners[key].append(setting)

    # 2. generate the union once
    console = console or Console(stderr=True)
    requests = list(unique.values())
    keys = list(unique)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        overall = progress.add_task(f"m1-sweep: {len(todo)} settings, {len(requests)} requests", total=len(requests))
        bars = {s: progress.add_task(f"  {s.name}", total=len(by_setting[s])) for s in todo}

        def advance(key: str) -> None:
            progress.advance(overall)
            for setting in owners.get(key, ()):
                progress.advance(bars[setting], by_setting[setting].count(key))

        class Capture(RecordSink):
            def add(self, record: dict[str, Any]) -> None:
                super().add(record)
                captured[record["request_hash"]] = record
                advance(record["request_hash"])

        captured: dict[str, dict[str, Any]] = {}
        capture = Capture()
        lm.record_sink = capture  # this model's records go to the sweep, not to lm-eval's writer
        lm.progress_bar = False
        generator: Any = lm
        if cfg.use_cache:
            from lm_eval.api.model import CachingLM, hash_args

            generator = CachingLM(lm, f"{cfg.use_cache}_rank0.db")  # the file lm_eval --use_cache uses
            for key, request in zip(keys, requests, strict=True):
                if hash_args("generate_until", request.args) in generator.dbdict:
                    advance(key)
        texts = dict(zip(keys, generator.generate_until(requests), strict=True))
        progress.update(overall, completed=len(requests))

        # 3. write every setting as its own lm-eval output folder
        replayer = _replayer(lm, texts, captured, capture)
        written = progress.add_task("writing lm-eval output folders", total=len(todo))
        for setting in todo:
            results = _evaluate(plan, setting, replayer)
            if results is None:
                continue
            final = plan.folder(setting)
            tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _write(plan, setting, results, tmp)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            progress.update(bars[setting], completed=len(by_setting[setting]))
            progress.advance(written)
    close = getattr(lm, "close", None)
    if callable(close):
        close()
    return [plan.folder(s) for s in plan.settings]


# -------------------------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """lm-eval's own ``run`` parser (its flags, defaults and validation), plus ``--budgets`` and ``--ignores``."""
    from lm_eval._cli.run import Run

    holder = argparse.ArgumentParser(add_help=False)
    run = Run(holder.add_subparsers())
    parser = run._parser
    parser.prog = "m1-sweep"
    parser.usage = None
    parser.description = (
        "Evaluate one model at several thinking budgets and 'Wait' rounds with ONE model load: the requests of "
        "all settings are generated together, and every setting is written as its own lm-eval output folder "
        "(<output_path>/budget_<B>_ignore_<N>/) that m1-report reads like any run. Settings already on disk are "
        "skipped; add --use_cache so that a killed sweep does not generate again what it had finished. All "
        "other flags are lm_eval's."
    )
    parser.epilog = EPILOG
    group = parser.add_argument_group("m1-sweep")
    group.add_argument("--budgets", required=True, help="thinking budgets, e.g. 512,1024,2048 (none = no forcing)")
    group.add_argument("--ignores", default="0", help="'Wait' rounds (thinking_n_ignore), e.g. 0,1,2 (default 0)")
    group.add_argument(
        "--repeats",
        default="1",
        help="K samples per question and setting (lm-eval's repeats; needs --gen_kwargs temperature>0): every task "
        "runs as its <task>_k<K> variant with maj@k, pass@k and avg@k for every k <= K (default 1: one sample)",
    )
    return parser


def _config(args: argparse.Namespace, settings: Sequence[Setting]) -> Any:
    from lm_eval.config.evaluate_config import EvaluatorConfig

    samples = getattr(args, "samples", None)
    if samples is not None and not (
        isinstance(samples, dict)
        and all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in samples.values())
    ):
        raise SweepError(
            f"--samples {samples!r} is lm-eval's choice of documents, a JSON object of task -> document indices "
            f"(e.g. --samples '{{\"m1_medqa\": [0, 5]}}'); for a number of documents use --limit"
        )
    ours = ("budgets", "ignores", "repeats")
    namespace = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ours})
    try:
        cfg = EvaluatorConfig.from_cli(namespace)
    except (ValueError, TypeError, AttributeError) as error:  # lm-eval's own checks of its flags
        if isinstance(error, M1UserError):
            raise
        raise SweepError(f"lm-eval rejects the arguments: {' '.join(str(error).split())[:300]}") from None
    if not cfg.output_path:
        raise SweepError("m1-sweep needs -o/--output_path: every setting is written as a folder under it")
    check_output_folder(Path(cfg.output_path))
    if not cfg.model:
        raise SweepError("m1-sweep needs --model (m1-vllm) and --model_args pretrained=<model>")
    for key in ("max_tokens_thinking", "thinking_n_ignore"):
        if key in (cfg.gen_kwargs or {}):
            raise SweepError(f"--gen_kwargs {key}=... is what the sweep varies; use --budgets/--ignores instead")
    if cfg.log_samples is False and not any(s.budget is None for s in settings):
        logger.debug("m1-sweep: --log_samples is on by default for sweeps (the report needs the samples)")
    cfg.log_samples = True
    return cfg


def _quiet_lm_eval_per_setting_output() -> None:
    """What lm-eval prints once per setting and pass, which a sweep's own progress display replaces: its
    "building contexts" progress bars (``TQDM_DISABLE``, read by tqdm) and git's "fatal: not a git repository"
    when it looks for the commit to record outside a repository (the recorded value is unchanged)."""
    import lm_eval.evaluator

    os.environ.setdefault("TQDM_DISABLE", "1")
    original = lm_eval.evaluator.get_git_commit_hash
    if getattr(original, "_m1_quiet", False):
        return

    def get_git_commit_hash():
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # git's own stderr, for the call only
        try:
            return original()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)

    get_git_commit_hash._m1_quiet = True  # type: ignore[attr-defined]
    lm_eval.evaluator.get_git_commit_hash = get_git_commit_hash


def sweep(argv: list[str], console: Any = None) -> list[Path]:
    """Run a sweep from an ``m1-sweep`` command line (without the program name); returns the settings' folders.

    User errors raise :class:`~m1_base.errors.M1UserError` (``m1-eval demo`` calls this in-process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = str(getattr(args, "verbosity", None) or "WARNING").upper()
    logging.getLogger("lm_eval").setLevel(verbosity)
    if verbosity not in ("DEBUG", "INFO"):
        # lm-eval repeats these for every setting, twice (collect and write); ours (lm_eval.m1_*) stay visible
        for name in ("lm_eval.evaluator", "lm_eval.api.task", "lm_eval.evaluator_utils"):
            logging.getLogger(name).setLevel(logging.ERROR)
        _quiet_lm_eval_per_setting_output()
    settings = parse_settings(args.budgets, args.ignores)
    repeats = parse_repeats(args.repeats)
    cfg = _config(args, settings)
    if repeats > 1:
        check_sampled(cfg.gen_kwargs or {}, repeats)
    plan = SweepPlan(cfg, settings, Path(cfg.output_path), task_manager=cfg.process_tasks(cfg.metadata))
    if repeats > 1:
        from m1_tasks.repeats import register_repeats

        cfg.tasks = register_repeats(plan.task_manager, list(cfg.tasks), repeats)
    return run_sweep(plan, console)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known, _ = build_parser().parse_known_args(argv)
    verbosity = str(getattr(known, "verbosity", None) or "WARNING").upper()
    logging.basicConfig(level=verbosity, format="%(levelname)s %(name)s: %(message)s")
    try:
        folders = sweep(argv)
    except M1UserError as error:
        if verbosity == "DEBUG":
            raise
        print(f"m1-sweep: error: {error}", file=sys.stderr)
        return 2
    for folder in folders:
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
