"""Generated lm-eval 0.4.13 output folders with known scores, for the m1-report tests and benchmark.

``write_run`` writes ``<out>/<model sanitized>/results_<date>.json``, ``samples_<task>_<date>.jsonl`` and
(optionally) ``m1_generations_<task>_<date>.jsonl`` in the layout and with the keys lm-eval 0.4.13's
``EvaluationTracker`` and the m1 models write, from per-document truths; ``RunTruth`` holds the numbers every
table must show.  The docs have the m1 tasks' columns (``question``, ``options`` as ``{letter, text}`` rows,
``answer``, ``answer_idx``, ``source``, ``index``, ``prompt_variant``); the task configs carry what the m1 YAMLs
set (``dataset_kwargs.m1_source``, ``generation_kwargs`` with ``do_sample: false``, ``metadata.version``).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE1_SIZES = {
    "m1_medmcqa": 4183,
    "m1_medqa": 1273,
    "m1_pubmedqa": 1000,
    "m1_mmlu_pro_med": 1535,
    "m1_gpqa_med": 390,
    "m1_lancet": 412,
    "m1_medbullets_op4": 308,
    "m1_medbullets_op5": 308,
    "m1_medxpertqa": 1449,
    "m1_nejm": 603,
}
LETTERS = "ABCDE"
SOURCES = {
    "m1_medmcqa": "MedMCQA_validation",
    "m1_medqa": "MedQA_USLME_test",
    "m1_pubmedqa": "PubMedQA_test",
    "m1_mmlu_pro_med": "MMLU-Pro_Medical_test",
    "m1_gpqa_med": "GPQA_Medical_test",
    "m1_lancet": "Lancet",
    "m1_medbullets_op4": "MedBullets_op4",
    "m1_medbullets_op5": "MedBullets_op5",
    "m1_medxpertqa": "MedXpertQA",
    "m1_nejm": "NEJM",
    "m1_hle": "HumanityLastExam",
    "m1_demo": "m1_demo",
}
CHAT_TEMPLATE = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
LOREM = (
    "The patient presents with symptoms that suggest several differential diagnoses; considering the history, "
    "laboratory values and imaging, the most likely mechanism involves the pathway described in option "
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class TaskTruth:
    """Per-document scores of one task (0/1 each) and what they add up to."""

    correct: list[int]
    strict: list[int]
    no_answer: list[int]
    thinking_tokens: list[int] = field(default_factory=list)
    budget_hit: list[int] = field(default_factory=list)
    ignore_rounds: list[int] = field(default_factory=list)
    doc_offset: int = 0  # doc ids start here (to make runs disagree on documents)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def acc(self) -> float:
        return sum(self.correct) / self.n

    @property
    def acc_strict(self) -> float:
        return sum(self.strict) / self.n

    @property
    def no_answer_rate(self) -> float:
        return sum(self.no_answer) / self.n

    @property
    def stderr(self) -> float:
        p = self.acc
        return math.sqrt(p * (1 - p) / (self.n - 1)) if self.n > 1 else 0.0


def make_truth(n: int, acc: float, *, seed: int, strict_gap: float = 0.05, no_answer: float = 0.03,
               budget: int | None = 1024, ignore: int = 0) -> TaskTruth:  # fmt: skip
    """``n`` documents, exactly ``round(acc * n)`` correct; strict misses some fuzzy hits; some unanswered."""
    rng = random.Random(seed)
    k = round(acc * n)
    correct = [1] * k + [0] * (n - k)
    rng.shuffle(correct)
    strict = [c if rng.random() > strict_gap else 0 for c in correct]
    unanswered = [1 if (c == 0 and rng.random() < no_answer / max(1e-9, 1 - acc)) else 0 for c in correct]
    limit = budget or 4096
    thinking = [rng.randint(limit // 4, limit) for _ in range(n)]
    hit = [1 if t >= limit else 0 for t in thinking]
    rounds = [rng.randint(0, ignore) for _ in range(n)]
    return TaskTruth(correct, strict, unanswered, thinking, hit, rounds)


@dataclass
class RunTruth:
    folder: Path  # the <model> folder
    results: Path
    model: str
    date_id: str
    gen_kwargs: Any
    tasks: dict[str, TaskTruth]


def _response(letter: str, doc_id: int, text_size: int, marker: bool, answered: bool) -> tuple[str, str, str]:
    start = (doc_id * 7) % len(LOREM)
    thinking = (LOREM * (2 + text_size // len(LOREM)))[start : start + text_size] + f" {letter}. (doc {doc_id})"
    answer = f"The answer is \\boxed{{{letter}}}." if answered else "I am not sure."
    if marker:
        return f"<|im_start|>think\n{thinking}\n<|im_start|>answer\n{answer}", thinking, answer
    return answer, "", answer


def write_run(
    out: Path,
    tasks: dict[str, TaskTruth],
    *,
    model: str = "org/model-a",
    date_id: str = "2026-01-01T00-00-00.000001",
    gen_kwargs: Any = None,
    records: bool = True,
    text_size: int | Callable[[int], int] = 200,
    version: str = "0.4.13",
    model_source: str = "m1-vllm",
    prompt_extra: str = "",
    group: bool = True,
    task_version: Any = 2.0,
    chat_template: str | None = CHAT_TEMPLATE,
    limit: int | float | None = None,
    original: dict[str, int] | None = None,
    model_args: Any = None,
    config_extra: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    responses: dict[tuple[str, int], str] | None = None,
    docs: dict[tuple[str, int], dict[str, Any]] | None = None,
) -> RunTruth:
    """Write one run; ``gen_kwargs`` as in ``config.gen_kwargs`` (dict, "k=v" string, or None).

    ``text_size`` is the length of the thinking text of every response, or a function of the doc id.
    ``task_version`` is the m1 tasks' ``metadata.version`` (``versions`` in the results file); ``chat_template``
    None is a run without ``--apply_chat_template``; ``limit`` is ``--limit`` (``n-samples.original`` is then
    ``original[task]``, else the paper's size); ``model_args`` replaces ``{"pretrained": model, "revision": "main"}``;
    ``config_extra`` updates ``config`` (seeds...); ``metadata`` goes into every task config's ``metadata``
    (``--metadata``); ``responses`` / ``docs`` replace the response text / update the doc of (task, doc_id).
    """
    sanitized = re.sub(r"[\"<>:/|\\?*\[\]]+", "__", model)
    folder = out / sanitized
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(gen_kwargs, str):
        parsed = dict(part.split("=", 1) for part in gen_kwargs.split(",") if part)
        parsed = {k: int(v) if v.isdigit() else v for k, v in parsed.items()}
    else:
        parsed = dict(gen_kwargs or {})
    forced = "max_tokens_thinking" in parsed
    budget = parsed.get("max_tokens_thinking")
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for task, truth in tasks.items():
        generation_kwargs = {"until": [], "max_gen_toks": 2048, "do_sample": False, **parsed}
        base = task.removesuffix("_cot")
        dataset_kwargs: dict[str, Any] = {"m1_source": SOURCES[base]} if base in SOURCES else {}
        if task.endswith("_cot") and dataset_kwargs:
            dataset_kwargs["m1_prompt"] = "cot"
        variant = "cot" if task.endswith("_cot") or (metadata or {}).get("prompt") == "cot" else "plain"
        configs[task] = {
            "task": task,
            "dataset_path": "UCSC-VLAA/m1_eval_data",
            "dataset_kwargs": dataset_kwargs,
            "test_split": "test",
            "output_type": "generate_until",
            "generation_kwargs": generation_kwargs,
            "num_fewshot": 0,
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_strict", "aggregation": "mean", "higher_is_better": True},
                {"metric": "no_answer", "aggregation": "mean", "higher_is_better": False},
            ],
            "metadata": {"version": task_version, **(metadata or {})},
        }
        results[task] = {
            "name": task,
            "alias": task,
            "sample_len": truth.n,
            "acc,none": truth.acc,
            "acc_stderr,none": truth.stderr,
            "acc_strict,none": truth.acc_strict,
            "acc_strict_stderr,none": 0.0,
            "no_answer,none": truth.no_answer_rate,
            "no_answer_stderr,none": "N/A",
        }
        sample_path = folder / f"samples_{task}_{date_id}.jsonl"
        record_path = folder / f"m1_generations_{task}_{date_id}.jsonl"
        record_handle = record_path.open("w", encoding="utf-8") if records else None
        with sample_path.open("w", encoding="utf-8") as handle:
            for i in range(truth.n):
                doc_id = truth.doc_offset + i
                target = LETTERS[doc_id % 4]
                if truth.no_answer[i]:
                    letter = ""
                elif truth.correct[i]:
                    letter = target
                else:
                    letter = LETTERS[(doc_id + 1) % 4]
                doc = {
                    "question": f"Question {doc_id} of {task}: which option is right? <script>alert({doc_id})</script>",
                    "options": [{"letter": k, "text": f"option {k} for {doc_id}"} for k in "ABCD"],
                    "answer": f"option {target} for {doc_id}",
                    "answer_idx": target,
                    "source": dataset_kwargs.get("m1_source", task),
                    "index": doc_id,
                    "prompt_variant": variant,
                }
                doc.update((docs or {}).get((task, doc_id), {}))
                prompt = f"<|im_start|>user\n{doc['question']}{prompt_extra}\n<|im_end|>\n<|im_start|>assistant\n"
                size = text_size(doc_id) if callable(text_size) else text_size
                response, thinking, answer = _response(letter or "", doc_id, size, forced, not truth.no_answer[i])
                if responses and (task, doc_id) in responses:
                    response = responses[(task, doc_id)]
                row = {
                    "doc_id": doc_id,
                    "doc": doc,
                    "target": target,
                    "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": generation_kwargs}},
                    "resps": [[response]],
                    "filtered_resps": [response],
                    "filter": "none",
                    "metrics": ["acc", "acc_strict", "no_answer"],
                    "doc_hash": sha(json.dumps(doc, indent=2, ensure_ascii=False)),
                    "prompt_hash": sha(prompt),
                    "target_hash": sha(target),
                    "acc": float(truth.correct[i]),
                    "acc_strict": float(truth.strict[i]),
                    "no_answer": float(truth.no_answer[i]),
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                if record_handle is not None:
                    record = {
                        "task": task,
                        "doc_id": doc_id,
                        "prompt_hash": row["prompt_hash"],
                        "forced": forced,
                        "budget": budget if isinstance(budget, int) else 3000,
                        "prompt_tokens": 50,
                        "thinking_tokens": truth.thinking_tokens[i] if truth.thinking_tokens else 0,
                        "answer_tokens": 12,
                        "ignore_rounds": truth.ignore_rounds[i] if truth.ignore_rounds else 0,
                        "budget_hit": bool(truth.budget_hit[i]) if truth.budget_hit else False,
                        "finish_reasons": ["stop", "stop"],
                        "thinking_text": thinking,
                        "answer_text": answer,
                        "model": model,
                        "schedule": "continuous",
                    }
                    record_handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if record_handle is not None:
            record_handle.close()
    group_subtasks: dict[str, list[str]] = {}
    groups: dict[str, Any] = {}
    if group and set(tasks) >= set(TABLE1_SIZES):
        names = list(TABLE1_SIZES)
        mean = sum(tasks[t].acc for t in names) / len(names)
        group_subtasks["m1_table1"] = names
        groups["m1_table1"] = {"alias": "m1_table1", "name": "m1_table1", "acc,none": mean, "acc_stderr,none": 0.01}
        results["m1_table1"] = dict(groups["m1_table1"])
    data = {
        "results": results,
        **({"groups": groups} if groups else {}),
        "group_subtasks": group_subtasks,
        "configs": configs,
        "versions": {t: task_version for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": {t: {"acc": True, "acc_strict": True, "no_answer": False} for t in tasks},
        "n-samples": {
            t: {"original": _original(t, truth.n, limit, original), "effective": truth.n} for t, truth in tasks.items()
        },
        "config": {
            "model": model_source,
            "model_args": {"pretrained": model, "revision": "main"} if model_args is None else model_args,
            "batch_size": 1,
            "batch_sizes": [],
            "device": None,
            "use_cache": None,
            "limit": limit,
            "bootstrap_iters": 100000,
            "gen_kwargs": gen_kwargs,
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": None,
        "date": 1767225600.0,
        "pretty_env_info": "N/A",
        "transformers_version": "4.57.0",
        "lm_eval_version": version,
        "upper_git_hash": None,
        "task_hashes": {},
        "model_source": model_source,
        "model_name": model,
        "model_name_sanitized": sanitized,
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": chat_template,
        "chat_template_sha": sha(chat_template) if chat_template else None,
        "total_evaluation_time_seconds": "12.5",
    }
    data["config"].update(config_extra or {})
    results_path = folder / f"results_{date_id}.json"
    results_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return RunTruth(folder, results_path, model, date_id, gen_kwargs, tasks)


def _original(task: str, n: int, limit: Any, original: dict[str, int] | None) -> int:
    if original and task in original:
        return original[task]
    if limit is not None:
        return TABLE1_SIZES.get(task.removesuffix("_cot"), n)
    return n


def small_table1(
    scale: float = 0.02, accs: Sequence[float] | None = None, seed: int = 0, **kwargs: Any
) -> dict[str, TaskTruth]:
    """The ten Table 1 tasks with ``scale`` of their real sizes (at least 20 documents each)."""
    accs = accs or [0.6, 0.7, 0.75, 0.65, 0.5, 0.62, 0.58, 0.52, 0.18, 0.64]
    return {
        task: make_truth(max(20, round(size * scale)), acc, seed=seed * 100 + i, **kwargs)
        for i, ((task, size), acc) in enumerate(zip(TABLE1_SIZES.items(), accs, strict=True))
    }
