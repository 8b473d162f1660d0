"""Write the task and group YAMLs of ``task_yamls/`` from the registry (:mod:`m1_tasks.benchmarks`).

::

    python -m m1_tasks.generate_yamls            # rewrite task_yamls/ (the source tree's, or --out DIR)
    python -m m1_tasks.generate_yamls --check    # exit 1 naming every file that differs from what it would write

One file per benchmark and prompt variant (``m1_medqa.yaml``, ``cot/m1_medqa_cot.yaml``) and per group and
variant (``m1_table1.yaml``, ``cot/m1_table1_cot.yaml``); and each of those as its K-sample variant for every K
of :data:`~m1_tasks.benchmarks.YAML_REPEATS` (``k8/m1_medqa_k8.yaml``, ``k8/m1_table1_cot_k8.yaml``): a task's
includes its one-sample file and the shared ``k8/_m1_repeats_k8_yaml`` (:func:`m1_tasks.repeats.repeat_overrides`
as YAML).  The shared task config, ``_m1_task_base_yaml`` (generation kwargs, metrics, the task version), is
written by hand and ``include:``d by every task.  ``tests/test_task_yamls.py`` re-runs :func:`render_all` and
requires the folder to hold exactly its files.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from m1_tasks.benchmarks import (
    BENCHMARKS,
    GROUP_LIST,
    PROMPT_VARIANTS,
    YAML_REPEATS,
    Benchmark,
    Group,
    PromptVariant,
    repeats_name,
)
from m1_tasks.paths import task_dir
from m1_tasks.repeats import repeat_aggregates, repeat_overrides
from m1_tasks.scoring import SCORER_VERSION

BASE_CONFIG = "_m1_task_base_yaml"  # hand-written, not generated
DEMO_DATASET_PATH = "m1_tasks/demo_data/m1_demo.json"  # informational, as lm-eval shows dataset_path
AGGREGATED_METRICS = ("acc", "acc_strict", "no_answer")


def folder_of(variant: PromptVariant) -> str:
    """The sub-folder of a variant's YAMLs: none for the plain prompt, else the variant's name."""
    return f"{variant.name}/" if variant.task_suffix else ""


def render_task(bench: Benchmark, variant: PromptVariant) -> str:
    lines: list[str] = []
    if variant.task_suffix:
        lines.append(f"# {variant.description} on {bench.source}.")
    elif bench.note:
        lines.append(f"# {bench.note}")
    lines.append(f"include: {'../' if folder_of(variant) else ''}{BASE_CONFIG}")
    lines.append(f"task: {bench.task_for(variant.name)}")
    if bench.data == "demo":
        lines.append(f"dataset_path: {DEMO_DATASET_PATH}")
    elif bench.data and bench.data.startswith("demo:"):
        lines.append(f"dataset_path: m1_tasks/demo_data/{bench.data.removeprefix('demo:')}.json")
    lines += ["dataset_kwargs:", f"  m1_source: {bench.source}"]
    if bench.data:
        lines.append(f"  m1_data: {bench.data}")
    if variant.task_suffix:
        lines.append(f"  m1_prompt: {variant.name}")
    return "\n".join(lines) + "\n"


def render_group(group: Group, variant: PromptVariant, k: int | None = None) -> str:
    """A group's YAML; with ``k``, its K-sample variant (members' variants, every K-sample metric aggregated)."""
    prompt = f" with the {variant.title} prompt" if variant.task_suffix else ""
    samples = f", {k} samples per question" if k else ""
    name = group.name + variant.task_suffix

    def member(task: str) -> str:
        return repeats_name(task, k) if k else task

    lines = [
        f"# {group.title}{prompt}{samples}; {group.mean}.",
        f"group: {member(name)}",
        "task:",
        *(f"  - {member(task + variant.task_suffix)}" for task in group.members),
        "aggregate_metric_list:",
    ]
    metrics = [a["metric"] for a in repeat_aggregates(k)] if k else AGGREGATED_METRICS
    for metric in metrics:
        lines += [f"  - metric: {metric}", "    aggregation: mean", "    weight_by_size: false"]
    lines += ["metadata:", f"  version: {SCORER_VERSION}"]
    return "\n".join(lines) + "\n"


def repeats_folder(k: int) -> str:
    """The folder of the K-sample variants (``k8/``)."""
    return f"k{k}/"


def repeats_config(k: int) -> str:
    """The shared K-sample config's file name (no ``.yaml``: lm-eval does not index it as a task)."""
    return f"_m1_repeats_k{k}_yaml"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value if value.replace("_", "").replace("@", "").isalnum() else json.dumps(value)
    if callable(value):
        return f"!function {value.__module__}.{value.__name__}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    raise TypeError(f"cannot render {value!r} as a YAML scalar")


def _yaml(key: str, value: Any, indent: str = "") -> list[str]:
    """``key: value`` as YAML lines: scalars, mappings, and lists of scalars or of flat mappings."""
    if isinstance(value, Mapping):
        return [f"{indent}{key}:"] + [line for k, v in value.items() for line in _yaml(k, v, indent + "  ")]
    if isinstance(value, (list, tuple)) and value:
        lines = [f"{indent}{key}:"]
        for item in value:
            if isinstance(item, Mapping):
                entries = [line for k, v in item.items() for line in _yaml(k, v, indent + "    ")]
                lines += [f"{indent}  - {entries[0].lstrip()}", *entries[1:]]
            else:
                lines.append(f"{indent}  - {_scalar(item)}")
        return lines
    return [f"{indent}{key}: {_scalar(value)}"]


def render_repeats_config(k: int) -> str:
    """The shared config of the K-sample variants, included after the task's own file."""
    lines = [
        f"# {k} samples per question (lm-eval's repeats), scored together by m1_tasks/repeats.py: acc, acc_strict and",
        f"# no_answer are means over the {k} samples; maj@k, pass@k and avg@k for k = 1..{k}. filter_list: one filter",
        "# named none, no function, so that process_results sees every response (lm-eval's default filter,",
        "# take_first, keeps the first). The task's generation kwargs are kept: give a temperature to sample.",
        "# Generated from m1_tasks.repeats.repeat_overrides; included by the tasks of this folder.",
    ]
    for key, value in repeat_overrides(k).items():
        lines += _yaml(key, value)
    return "\n".join(lines) + "\n"


def render_repeats_task(bench: Benchmark, variant: PromptVariant, k: int) -> str:
    task = bench.task_for(variant.name)
    return "\n".join([
        f"# {task} with {k} samples per question: maj@k, pass@k, avg@k for k = 1..{k} (m1_tasks/repeats.py).",
        "include:",
        f"  - ../{folder_of(variant)}{task}.yaml",
        f"  - {repeats_config(k)}",
        f"task: {repeats_name(task, k)}",
    ]) + "\n"


def render_all() -> dict[str, str]:
    """Relative path (``m1_medqa.yaml``, ``cot/m1_medqa_cot.yaml``, ``k8/m1_medqa_k8.yaml``, ...) -> the text it
    should hold."""
    files: dict[str, str] = {}
    for variant in PROMPT_VARIANTS:
        folder = folder_of(variant)
        for bench in BENCHMARKS:
            files[f"{folder}{bench.task_for(variant.name)}.yaml"] = render_task(bench, variant)
        for group in GROUP_LIST:
            files[f"{folder}{group.name}{variant.task_suffix}.yaml"] = render_group(group, variant)
    for k in YAML_REPEATS:
        folder = repeats_folder(k)
        files[f"{folder}{repeats_config(k)}"] = render_repeats_config(k)
        for variant in PROMPT_VARIANTS:
            for bench in BENCHMARKS:
                name = repeats_name(bench.task_for(variant.name), k)
                files[f"{folder}{name}.yaml"] = render_repeats_task(bench, variant, k)
            for group in GROUP_LIST:
                name = repeats_name(group.name + variant.task_suffix, k)
                files[f"{folder}{name}.yaml"] = render_group(group, variant, k)
    return files


def differences(folder: Path) -> list[str]:
    """The files under ``folder`` that differ from :func:`render_all`: missing, changed, or not generated."""
    expected = render_all()
    problems = []
    for name, text in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: differs from the registry")
    for path in sorted(folder.rglob("*.yaml")):
        name = path.relative_to(folder).as_posix()
        if name not in expected:
            problems.append(f"{name}: not a benchmark or group of m1_tasks.benchmarks")
    return problems


def write_all(folder: Path) -> list[Path]:
    """Write every generated file under ``folder`` (the hand-written base config is left alone)."""
    written = []
    for name, text in render_all().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m1_tasks.generate_yamls", description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output_path", "--out", dest="out", type=Path, default=None,
                        help="the task folder (default: the one lm-eval indexes, task_yamls/)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    folder = args.out or task_dir()
    if args.check:
        problems = differences(folder)
        for problem in problems:
            print(f"{folder}/{problem}", file=sys.stderr)
        return 1 if problems else 0
    extra = [p for p in differences(folder) if p.endswith("not a benchmark or group of m1_tasks.benchmarks")]
    for path in write_all(folder):
        print(path)
    for problem in extra:
        print(f"{folder}/{problem} (left in place: delete it if the benchmark is gone)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
