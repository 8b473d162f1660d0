"""Write the task and group YAMLs of ``task_yamls/`` from the registry (:mod:`m1_tasks.benchmarks`).

::

    python -m m1_tasks.generate_yamls            # rewrite task_yamls/ (the source tree's, or --out DIR)
    python -m m1_tasks.generate_yamls --check    # exit 1 naming every file that differs from what it would write

One file per benchmark and prompt variant (``m1_medqa.yaml``, ``cot/m1_medqa_cot.yaml``) and per group and
variant (``m1_table1.yaml``, ``cot/m1_table1_cot.yaml``).  The shared task config, ``_m1_task_base_yaml``
(generation kwargs, metrics, the task version), is written by hand and ``include:``d by every task.
``tests/test_task_yamls.py`` re-runs :func:`render_all` and requires the folder to hold exactly its files.

Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from m1_tasks.benchmarks import BENCHMARKS, GROUP_LIST, PROMPT_VARIANTS, Benchmark, Group, PromptVariant
from m1_tasks.paths import task_dir
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


def render_group(group: Group, variant: PromptVariant) -> str:
    prompt = f" with the {variant.title} prompt" if variant.task_suffix else ""
    lines = [
        f"# {group.title}{prompt}; {group.mean}.",
        f"group: {group.name}{variant.task_suffix}",
        "task:",
        *(f"  - {member}{variant.task_suffix}" for member in group.members),
        "aggregate_metric_list:",
    ]
    for metric in AGGREGATED_METRICS:
        lines += [f"  - metric: {metric}", "    aggregation: mean", "    weight_by_size: false"]
    lines += ["metadata:", f"  version: {SCORER_VERSION}"]
    return "\n".join(lines) + "\n"


def render_all() -> dict[str, str]:
    """Relative path (``m1_medqa.yaml``, ``cot/m1_medqa_cot.yaml``, ...) -> the text it should hold."""
    files: dict[str, str] = {}
    for variant in PROMPT_VARIANTS:
        folder = folder_of(variant)
        for bench in BENCHMARKS:
            files[f"{folder}{bench.task_for(variant.name)}.yaml"] = render_task(bench, variant)
        for group in GROUP_LIST:
            files[f"{folder}{group.name}{variant.task_suffix}.yaml"] = render_group(group, variant)
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
