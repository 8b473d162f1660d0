"""Each run's evaluation protocol, read from its files (compared with the paper's and between the runs by
:mod:`m1_reports.deviations`).

A run's :class:`Protocol` comes from its results file (``config.gen_kwargs``, ``config.model_args``, the lm-eval
seeds, each task's ``configs[task].generation_kwargs`` -- the YAML's ``until``/``max_gen_toks``/``do_sample``
merged with ``--gen_kwargs`` --, ``chat_template``/``chat_template_sha``, the task config's prompt variant and the
``versions`` entry that names the scorer), from the first doc of its samples files (the ``prompt_variant`` the m1
tasks record) and from its m1 generation records (the schedule).  Settings that can differ between tasks are kept
per task (:class:`TaskSettings`).

Each field is read and shown (:meth:`Protocol.display`, :data:`FIELDS`) here; the flag levels (:data:`WARN`,
:data:`INFO`) are defined here too, so that a new field is a change to this module and, for its comparison with
the paper's protocol, to :func:`m1_reports.deviations.paper_flags`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from m1_base import values
from m1_base.errors import M1UserError
from m1_models.settings import DEFAULT_MAX_GEN_TOKS, PRESETS
from m1_reports.columns import benchmark, order_tasks
from m1_reports.naming import budget_of, ignore_of, run_args, short_model_name
from m1_reports.read_results import RunInfo, TaskResult
from m1_reports.suite import is_m1_task, scores_with_marker, version_number
from m1_tasks.prompt import COT, PLAIN, PROMPT_METADATA_KEY

logger = logging.getLogger(__name__)

M1_MODEL = "m1-vllm"
WARN, INFO = "warn", "info"

# The header's columns: Protocol.display() keys, in order, with their labels.
FIELDS: tuple[tuple[str, str], ...] = (
    ("budget", "thinking budget"),
    ("ignore", "ignore rounds"),
    ("temperature", "temperature"),
    ("seed", "seed"),
    ("max_tokens", "max tokens"),
    ("chat_template", "chat template"),
    ("prompt", "prompt"),
    ("scorer", "scorer"),
)
#: K samples per question (lm-eval's ``repeats``): a column of the header only when a run has K > 1
#: (:meth:`m1_reports.deviations.ProtocolHeader.fields`, after the temperature), so that one-sample reports keep
#: their columns
SAMPLES_FIELD = ("samples", "samples per question")
FIELD_LABELS = dict((*FIELDS, SAMPLES_FIELD))
# What a sweep varies: runs that differ only in these are one protocol with these axes (m1_reports.deviations).
AXES = ("budget", "ignore")
# lm-eval's seeds in a results file's config (its --seed: python random, numpy, torch, few-shot)
LM_EVAL_SEEDS = ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")


@dataclass(frozen=True)
class TaskSettings:
    """The generation and scoring settings one task of a run was evaluated with."""

    task: str
    forced: bool  # budget forcing (max_tokens_thinking given)
    budget: int | str | None
    ignore: int | None
    preset: str | None
    temperature: float | None  # None: neither a temperature nor do_sample=false (the engine's default sampling)
    top_p: float | None
    seed: int | None  # a seed gen_kwarg
    max_gen_toks: int
    max_tokens_answer: int | None  # forced runs: the answer-phase cap
    m1: bool  # an m1 task (scored by the m1 scorer)
    prompt: str | None  # plain / cot (m1 tasks)
    prompt_origin: str  # task config, --metadata, samples, default
    version: float | None  # versions[task] as a number
    raw_version: Any = None
    metrics: tuple[str, ...] = ()
    repeats: int = 1  # K samples per question (lm-eval's repeats)

    @property
    def greedy(self) -> bool:
        return self.temperature is not None and self.temperature == 0


@dataclass(frozen=True)
class Protocol:
    """One run's protocol."""

    run: str
    model: str
    model_type: str | None  # lm-eval's --model (m1-vllm, hf, vllm, ...)
    tasks: dict[str, TaskSettings]
    seed: int | None  # the sampling seed: a seed gen_kwarg, else model_args seed, else the model's default
    seed_origin: str
    lm_eval_seeds: dict[str, Any]  # config.random_seed / numpy_seed / torch_seed / fewshot_seed
    chat_template: bool | None  # --apply_chat_template given (chat_template not null); None: not recorded
    chat_template_sha: str | None
    system_instruction: bool
    schedule: str | None  # m1-vllm's schedule (model_args, else the generation records)
    limit: Any

    @property
    def forced(self) -> bool:
        return any(t.forced for t in self.tasks.values())

    @property
    def repeats(self) -> int:
        """The most samples per question of any task (1: a one-sample run)."""
        return max((t.repeats for t in self.tasks.values()), default=1)

    def display(self, samples: bool | None = None) -> dict[str, str]:
        """The header's cells: one text per :data:`FIELDS` key (per-task differences spelled out), and the samples
        per question (:data:`SAMPLES_FIELD`) when ``samples`` (default: when this run has more than one)."""
        cells = {
            "budget": self._per_task(lambda t: str(t.budget) if t.forced else "none (no forcing)"),
            "ignore": self._per_task(lambda t: str(t.ignore if t.ignore is not None else 0) if t.forced else "–"),
            "temperature": self._per_task(temperature_text),
            "seed": self._seed_text(),
            "max_tokens": self._per_task(_max_tokens_text),
            "chat_template": (
                "unknown (not in the results file)" if self.chat_template is None
                else f"on (sha {self.chat_template_sha[:8]})" if self.chat_template and self.chat_template_sha
                else "on" if self.chat_template else "off (no --apply_chat_template)"
            ),  # fmt: skip
            "prompt": self._per_task(_prompt_text),
            "scorer": self._per_task(_scorer_text),
        }
        if self.repeats > 1 if samples is None else samples:
            cells[SAMPLES_FIELD[0]] = self._per_task(lambda t: str(t.repeats))
        return cells

    def series_display(self, samples: bool | None = None) -> dict[str, str]:
        """:meth:`display` without the sweep's axes (:data:`AXES`), the token caps by their shape (``thinking budget +
        answer 1024``): equal for the runs of one sweep."""
        cells = {key: text for key, text in self.display(samples).items() if key not in AXES}
        cells["max_tokens"] = self._per_task(max_tokens_shape)
        return cells

    def _seed_text(self) -> str:
        return f"{self.seed} ({self.seed_origin})" if self.seed is not None else f"unknown ({self.seed_origin})"

    def lm_eval_seeds_text(self) -> str:
        """lm-eval's own seeds (``--seed``): python random / numpy / torch / few-shot."""
        return "/".join(str(self.lm_eval_seeds[k]) for k in LM_EVAL_SEEDS if k in self.lm_eval_seeds)

    def _per_task(self, text: Any) -> str:
        return summarize({task: text(settings) for task, settings in self.tasks.items()})


def summarize(values: Mapping[str, str]) -> str:
    """One value, or ``a (MedQA, GPQA); b (PubMedQA)`` when tasks differ."""
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) <= 1:
        return distinct[0] if distinct else "–"
    parts = []
    for value in distinct:
        tasks = [benchmark(t).label for t in order_tasks([t for t, v in values.items() if v == value])]
        parts.append(f"{value} ({', '.join(tasks)})")
    return "; ".join(parts)


def temperature_text(t: TaskSettings) -> str:
    top_p = f", top_p {t.top_p:g}" if t.top_p is not None and t.top_p != 1 else ""
    if t.temperature is None:
        return "engine default (sampled)" + top_p
    if t.greedy:
        return "0 (greedy)"
    return f"{t.temperature:g} (sampled{top_p})"


def _max_tokens_text(t: TaskSettings) -> str:
    if t.forced:
        return f"thinking {t.budget} + answer {t.max_tokens_answer}"
    return f"{t.max_gen_toks} new tokens"


def max_tokens_shape(t: TaskSettings) -> str:
    """The token caps with the thinking budget left as a name (the same for every budget of a sweep)."""
    if t.forced:
        return f"thinking budget + answer {t.max_tokens_answer}"
    return f"{t.max_gen_toks} new tokens"


def _prompt_text(t: TaskSettings) -> str:
    if not t.m1 or t.prompt is None:
        return "the task's own"
    return ("+CoT" if t.prompt == COT else t.prompt) + (f" ({t.prompt_origin})" if t.prompt_origin else "")


def _scorer_text(t: TaskSettings) -> str:
    if not t.m1:
        return "the task's own (" + (", ".join(t.metrics) or "its metrics") + ")"
    version = f"v{t.raw_version}" if t.raw_version is not None else "version unknown"
    if scores_with_marker(t.version):
        return f"m1 {version} (answer marker included, m1's rule)"
    return f"m1 {version} (answer marker cut off: older m1-eval scorer)"


# ---------------------------------------------------------------------------------------------- reading


_number = version_number  # a float or None: the same reading as the task versions'


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _flag(key: str, value: Any) -> bool | None:
    """A run's true/false setting read with the models' own parser; None when it is spelled otherwise (a run of
    another model may have taken any spelling: its meaning is then unknown, not guessed)."""
    try:
        return values.boolean(value, key, values.GEN_KWARG)
    except M1UserError:
        return None


def task_settings(task: str, result: TaskResult, samples_variant: str | None) -> TaskSettings:
    """A task's settings from its evaluated config (``configs[task].generation_kwargs`` already holds the
    command line's gen_kwargs merged in by lm-eval)."""
    kwargs = dict(result.gen_kwargs)
    budget = budget_of(kwargs)
    forced = budget is not None
    preset = str(kwargs.get("budget_preset", "m1")) if forced else None
    preset_values = PRESETS.get(preset or "m1", PRESETS["m1"])
    max_gen_toks = _integer(kwargs.get("max_gen_toks")) or DEFAULT_MAX_GEN_TOKS
    answer_cap = kwargs.get("max_tokens_answer", preset_values.get("max_tokens_answer"))
    max_tokens_answer = (_integer(answer_cap) or max_gen_toks) if forced else None

    temperature = _number(kwargs.get("temperature"))
    if temperature is None and "do_sample" in kwargs and _flag("do_sample", kwargs["do_sample"]) is False:
        temperature = 0.0  # do_sample=false without a temperature: greedy (lm-eval's models and m1-vllm)

    m1 = is_m1_task(task, result)
    prompt, origin = _prompt_variant(result, samples_variant) if m1 else (None, "")
    metrics = tuple(
        str(m.get("metric")) for m in result.config.get("metric_list") or [] if isinstance(m, Mapping)
    ) or ((result.metric,) if result.metric else ())
    return TaskSettings(
        task=task,
        forced=forced,
        budget=budget,
        ignore=ignore_of(kwargs) if forced else None,
        preset=preset,
        temperature=temperature,
        top_p=_number(kwargs.get("top_p")),
        seed=_integer(kwargs.get("seed")),
        max_gen_toks=max_gen_toks,
        max_tokens_answer=max_tokens_answer,
        m1=m1,
        prompt=prompt,
        prompt_origin=origin,
        version=version_number(result.version),
        raw_version=result.version,
        metrics=metrics,
        repeats=result.repeats,
    )


def _variant(value: Any) -> str | None:
    text = str(value).strip().lower() if value not in (None, "") else ""
    return {"cot": COT, "plain": PLAIN, "default": PLAIN, "none": PLAIN}.get(text) if text else None


def _prompt_variant(result: TaskResult, samples_variant: str | None) -> tuple[str, str]:
    """The prompt variant: the docs' own record (samples), else the task config (``dataset_kwargs.m1_prompt``
    of the ``*_cot`` tasks), else ``metadata.prompt`` (``--metadata``), else plain."""
    config = result.config
    kwargs = config.get("dataset_kwargs") if isinstance(config.get("dataset_kwargs"), Mapping) else {}
    metadata = config.get("metadata") if isinstance(config.get("metadata"), Mapping) else {}
    from_task, from_metadata = _variant(kwargs.get("m1_prompt")), _variant(metadata.get(PROMPT_METADATA_KEY))
    configured = (from_task, "task config") if from_task else (from_metadata, "--metadata") if from_metadata else None
    from_samples = _variant(samples_variant)
    if from_samples is not None:
        if configured is not None and configured[0] == from_samples:
            return configured  # type: ignore[return-value]
        return from_samples, "samples" if from_samples != PLAIN else ""
    if configured is not None:
        return configured  # type: ignore[return-value]
    return PLAIN, ""


@cache
def _m1_model_defaults() -> dict[str, Any]:
    """m1-vllm's constructor defaults (seed, schedule), read from the model class itself."""
    try:
        from m1_models.lm_eval_model import M1LM

        parameters = inspect.signature(M1LM.__init__).parameters
        return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    except Exception:  # noqa: BLE001 - without the model package the default is just unknown
        logger.debug("m1-report: m1-vllm's defaults unavailable", exc_info=True)
        return {}


def run_protocol(run: RunInfo, variants: Mapping[str, str | None], schedules: Sequence[str]) -> Protocol:
    """``variants``: task -> the samples' prompt_variant; ``schedules``: the generation records' schedules."""
    config = run.raw_config
    model_args = config.get("model_args")
    try:
        model_args = run_args(model_args) if isinstance(model_args, str | Mapping) else {}
    except TypeError:
        model_args = {}
    model_type = str(config.get("model")) if config.get("model") else run.model_source
    tasks = {task: task_settings(task, run.tasks[task], variants.get(task)) for task in order_tasks(run.tasks)}

    gen_seeds = {t.seed for t in tasks.values() if t.seed is not None}
    if len(gen_seeds) == 1:
        seed, origin = gen_seeds.pop(), "seed gen_kwarg"
    elif _integer(model_args.get("seed")) is not None:
        seed, origin = _integer(model_args.get("seed")), "model_args"
    elif model_type == M1_MODEL and "seed" in _m1_model_defaults():
        seed, origin = int(_m1_model_defaults()["seed"]), f"{M1_MODEL} default"
    else:
        seed, origin = _integer(config.get("torch_seed")), "lm-eval --seed (torch)"
    schedule = model_args.get("schedule") or (schedules[0] if len(set(schedules)) == 1 else None)
    if schedule is None and model_type == M1_MODEL:
        schedule = _m1_model_defaults().get("schedule")
    return Protocol(
        run=run.label,
        model=short_model_name(run.model_name),
        model_type=model_type,
        tasks=tasks,
        seed=seed,
        seed_origin=origin,
        lm_eval_seeds={k: config[k] for k in LM_EVAL_SEEDS if k in config},
        chat_template=run.chat_template is not None if run.chat_template_recorded else None,
        chat_template_sha=run.chat_template_sha,
        system_instruction=bool(run.system_instruction),
        schedule=str(schedule) if schedule else None,
        limit=run.limit,
    )
