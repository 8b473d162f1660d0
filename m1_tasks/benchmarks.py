"""The one registry of the m1 benchmarks: every fact about a benchmark that more than one place needs.

A :class:`Benchmark` is one lm-eval task of the suite: its task name, its source key in the data file, the number
of documents the m1 paper evaluated, its column and display label in the report, whether (and where, by its
position here) it is a column of the paper's Table 1, and the groups it belongs to.  Each benchmark exists in
every :data:`PROMPT_VARIANTS` (``m1_medqa``, ``m1_medqa_cot``, ...).

Who reads it: the data loader (:mod:`m1_tasks.data`: source keys, paper counts), the report
(:mod:`m1_reports.columns`, :mod:`m1_reports.suite`: columns, labels, Table 1 order, counts) and the task YAMLs,
which are generated from it (:mod:`m1_tasks.generate_yamls`; ``tests/test_task_yamls.py`` re-runs the generator
and requires the files to be what it writes).  To add a benchmark: add it here, then
``python -m m1_tasks.generate_yamls``.

Standard library only (the start-up hook's neighbours and the report import it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class PromptVariant:
    """A prompt of the suite: every benchmark has a task per variant, named ``task + task_suffix``."""

    name: str  # the name --metadata '{"prompt": ...}', M1_PROMPT and dataset_kwargs.m1_prompt use
    task_suffix: str  # appended to the benchmark's task name (and to the group names)
    label_suffix: str  # appended to the benchmark's display label
    title: str  # the paper's name for the prompt
    description: str  # for the generated YAMLs' comments


PLAIN = "plain"
COT = "cot"
PROMPT_VARIANTS: tuple[PromptVariant, ...] = (
    PromptVariant(PLAIN, "", "", "plain", "The paper's prompt"),
    PromptVariant(
        COT, "_cot", " (CoT)", "+CoT", 'The paper\'s "+CoT" baseline prompt ("Let\'s think step by step. ...")'
    ),
)
COT_SUFFIX = PROMPT_VARIANTS[1].task_suffix

#: the K of the committed K-sample variants (``task_yamls/k8/``: ``m1_medqa_k8``, ..., ``m1_table1_k8``, and the
#: CoT ones), every task and group of the suite; any other K is made at run time (:mod:`m1_tasks.repeats`)
YAML_REPEATS: tuple[int, ...] = (8,)


REPEATS_MARK = "_k"  # a K-sample variant's name is its task's or group's name + "_k" + K


def repeats_name(name: str, k: int) -> str:
    """The name of a task's or group's K-sample variant: ``m1_medqa`` -> ``m1_medqa_k8``."""
    return f"{name}{REPEATS_MARK}{k}"


def split_repeats(name: str) -> tuple[str, int | None]:
    """The inverse of :func:`repeats_name` for the suite's names: ``(task or group, K)`` of a K-sample variant
    (``m1_medqa_k8`` -> ``("m1_medqa", 8)``, ``m1_table1_cot_k8`` -> ``("m1_table1_cot", 8)``), any other name
    ``(name, None)`` (``m1_medqa``, ``my_task_k8``: only a task or group of the suite, in any prompt variant, has
    K-sample variants)."""
    head, mark, tail = name.rpartition(REPEATS_MARK)
    if mark and tail.isascii() and tail.isdigit() and not tail.startswith("0") and _suite_name(head):
        return head, int(tail)
    return name, None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the suite (its plain-prompt task; the variants are :meth:`task_for`)."""

    task: str  # lm-eval task name
    source: str  # key in m1_eval_data.json (the bundled demo file for m1_demo): dataset_kwargs.m1_source
    paper_count: int | None  # documents the paper evaluated (every record of the official file); None: not the paper's
    column: str  # column name in the report's table1.csv and in m1_reports/data/paper_table1.csv
    label: str  # display label
    table1: bool = False  # a column of the paper's Table 1 (the columns are in the order of BENCHMARKS)
    groups: tuple[str, ...] = ()  # the groups (their plain-prompt names) this benchmark is a member of
    data: str | None = None  # dataset_kwargs.m1_data: "demo" / "demo:<name>" read a file bundled with the package
    note: str = ""  # one line for the generated YAML's comment (empty: none)

    def task_for(self, variant: str) -> str:
        """The task name of this benchmark with the prompt ``variant`` (``plain``, ``cot``)."""
        return self.task + VARIANTS[variant].task_suffix


@dataclass(frozen=True)
class Group:
    """A group of the suite: lm-eval aggregates each metric as the unweighted mean of the members (the paper's Avg)."""

    name: str
    title: str  # for the generated YAML's comment
    mean: str = "unweighted mean"  # how the comment names the aggregate

    @property
    def members(self) -> tuple[str, ...]:
        """The member tasks (plain prompt), in the order of :data:`BENCHMARKS`."""
        return tuple(b.task for b in BENCHMARKS if self.name in b.groups)


_TABLE1_HUATUO = ("m1_table1", "m1_huatuo")  # the HuatuoGPT-o1 sets: the first five Table 1 columns
_TABLE1_HARD = ("m1_table1", "m1_hard")

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("m1_medmcqa", "MedMCQA_validation", 4183, "MedMCQA", "MedMCQA", True, _TABLE1_HUATUO),
    Benchmark("m1_medqa", "MedQA_USLME_test", 1273, "MedQA", "MedQA", True, _TABLE1_HUATUO),
    Benchmark("m1_pubmedqa", "PubMedQA_test", 1000, "PubMedQA", "PubMedQA", True, _TABLE1_HUATUO),
    Benchmark("m1_mmlu_pro_med", "MMLU-Pro_Medical_test", 1535, "MMLU-Pro", "MMLU-Pro", True, _TABLE1_HUATUO),
    Benchmark("m1_gpqa_med", "GPQA_Medical_test", 390, "GPQA", "GPQA", True, _TABLE1_HUATUO),
    Benchmark("m1_lancet", "Lancet", 412, "Lancet", "Lancet", True, _TABLE1_HARD),
    Benchmark("m1_medbullets_op4", "MedBullets_op4", 308, "MedBullets_op4", "MedBullets op4", True, _TABLE1_HARD),
    Benchmark("m1_medbullets_op5", "MedBullets_op5", 308, "MedBullets_op5", "MedBullets op5", True, _TABLE1_HARD),
    Benchmark("m1_medxpertqa", "MedXpertQA", 1449, "MedXpertQA", "MedXpertQA", True, _TABLE1_HARD),
    Benchmark("m1_nejm", "NEJM", 603, "NEJM", "NEJM", True, _TABLE1_HARD),
    # not in Table 1; the official file's count (one record whose answer text is not its option's is kept)
    Benchmark("m1_hle", "HumanityLastExam", 103, "HLE", "HLE", False, ("m1_hard",)),
    Benchmark(
        "m1_demo", "m1_demo", None, "demo", "demo", data="demo",
        note="~30 medical multiple-choice questions written for m1-eval (m1_tasks/demo_data/m1_demo.json): "
        "smoke runs.",
    ),  # fmt: skip
    Benchmark(
        "m1_demo_chain", "m1_demo_chain", None, "demo_chain", "demo chain", data="demo:m1_demo_chain",
        note="100 ward-transfer chains of 2-22 steps (m1_tasks/demo_chain.py, "
        "m1_tasks/demo_data/m1_demo_chain.json): the demo's test-time scaling.",
    ),  # fmt: skip
)

GROUP_LIST: tuple[Group, ...] = (
    Group("m1_table1", "The ten benchmark columns of the m1 paper's Table 1", "Avg = unweighted mean"),
    Group("m1_huatuo", "The five HuatuoGPT-o1 evaluation sets (Table 1's first five columns)"),
    Group(
        "m1_hard",
        "The harder sets: Lancet, MedBullets op4/op5, MedXpertQA, NEJM and Humanity's Last Exam (medical)",
    ),
)

# ------------------------------------------------------------------------------------------ derived views

VARIANTS: Mapping[str, PromptVariant] = MappingProxyType({v.name: v for v in PROMPT_VARIANTS})
BY_TASK: Mapping[str, Benchmark] = MappingProxyType({b.task: b for b in BENCHMARKS})
BY_COLUMN: Mapping[str, Benchmark] = MappingProxyType({b.column: b for b in BENCHMARKS})
#: the paper's Table 1 columns, in its order
TABLE1: tuple[Benchmark, ...] = tuple(b for b in BENCHMARKS if b.table1)
#: the benchmarks read from m1_eval_data.json (not the bundled demo)
PAPER: tuple[Benchmark, ...] = tuple(b for b in BENCHMARKS if b.data is None)
DEMO: Benchmark = BY_TASK["m1_demo"]
DEMO_SOURCE = DEMO.source

#: lm-eval task name -> source key in m1_eval_data.json (the paper's benchmarks)
TASK_SOURCES: dict[str, str] = {b.task: b.source for b in PAPER}
#: source key -> documents the paper evaluated (every record of the official file, as m1's script scores them)
EXPECTED_COUNTS: dict[str, int] = {b.source: b.paper_count for b in PAPER if b.paper_count is not None}
#: group name (plain prompt) -> member tasks, in the order of BENCHMARKS (the YAMLs list the same)
GROUPS: dict[str, list[str]] = {g.name: list(g.members) for g in GROUP_LIST}


# ------------------------------------------------------------------------------------------ look-ups


def _suite_name(name: str) -> bool:
    """A task or group of the suite in a prompt variant (``m1_medqa``, ``m1_medqa_cot``, ``m1_table1_cot``)."""
    for variant in PROMPT_VARIANTS:
        suffix = variant.task_suffix
        base = name[: len(name) - len(suffix)] if name.endswith(suffix) else None
        if base in BY_TASK or base in GROUPS:
            return True
    return False


def split_variant(task: str) -> tuple[str, str]:
    """``(benchmark task, prompt variant)`` of a task or group name, its K-sample variants included (the
    ``_k<K>`` of :func:`split_repeats` dropped): ``m1_medqa_cot`` -> ``("m1_medqa", "cot")``, ``m1_table1_cot``
    -> ``("m1_table1", "cot")``, ``m1_medqa_k8`` -> ``("m1_medqa", "plain")``, ``m1_medqa_cot_k8`` ->
    ``("m1_medqa", "cot")``; any other name -> ``(name, "plain")``."""
    task = split_repeats(task)[0]
    for variant in PROMPT_VARIANTS:
        suffix = variant.task_suffix
        if suffix and task.endswith(suffix):
            base = task[: -len(suffix)]
            if base in BY_TASK or base in GROUPS:
                return base, variant.name
    return task, PLAIN


def benchmark_of(task: str) -> Benchmark | None:
    """The benchmark of a task name in any prompt variant, K-sample variants included (None: not a task of the
    suite)."""
    return BY_TASK.get(split_variant(task)[0])


def source_of(task: str) -> str | None:
    """The source key a task (any variant) reads; None for a task that is not in the suite."""
    bench = benchmark_of(task)
    return bench.source if bench is not None else None


def paper_count(task: str) -> int | None:
    """The documents the paper evaluated for a task (any variant); None when it is not a paper benchmark."""
    bench = benchmark_of(task)
    return bench.paper_count if bench is not None else None


def task_of_source(source: str) -> str:
    """The (plain-prompt) task that reads ``source``; the source itself when no task does."""
    return next((b.task for b in BENCHMARKS if b.source == source), source)


def all_task_names(variants: Iterable[str] | None = None, repeats: Iterable[int] = YAML_REPEATS) -> list[str]:
    """Every task and group name of the suite, in the given prompt variants (default: all), each also as its
    K-sample variant for every K of ``repeats`` (default: the committed ones, :data:`YAML_REPEATS`)."""
    names: list[str] = []
    for variant in variants or VARIANTS:
        names += [b.task_for(variant) for b in BENCHMARKS]
        names += [g.name + VARIANTS[variant].task_suffix for g in GROUP_LIST]
    return names + [repeats_name(name, k) for k in repeats for name in names]
