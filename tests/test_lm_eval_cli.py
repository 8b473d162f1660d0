"""The plain ``lm_eval`` command, in a subprocess, from a folder outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import helpers
from tests.helpers import read_jsonl, run_lm_eval

QUESTIONS = [
    ("Which organ produces insulin?", {"A": "liver", "B": "pancreas", "C": "kidney", "D": "spleen"}, "B"),
    ("Which vitamin deficiency causes scurvy?", {"A": "vitamin A", "B": "vitamin D", "C": "vitamin C"}, "C"),
    ("Which blood cells carry oxygen?", {"A": "red cells", "B": "platelets", "C": "neutrophils"}, "A"),
    ("Which nerve is affected in carpal tunnel syndrome?", {"A": "ulnar", "B": "radial", "C": "median"}, "C"),
]


def write_local_task(folder):
    prompts = [q + "\n" + "\n".join(f"{k}. {v}" for k, v in o.items()) for q, o, _ in QUESTIONS * 2]
    helpers.write_local_task(folder, "m1_e2e_local", prompts, {"until": [], "max_gen_toks": 64})


@pytest.mark.cli
@pytest.mark.engine
def test_lm_eval_runs_m1_vllm_with_budget_forcing(tiny_model, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_local_task(tasks)
    budget = 250
    result = run_lm_eval(
        [
            "--model",
            "m1-vllm",
            "--model_args",
            f"pretrained={tiny_model},max_model_len=2048",
            "--tasks",
            "m1_e2e_local",
            "--include_path",
            str(tasks),
            "--apply_chat_template",
            "--gen_kwargs",
            f"max_tokens_thinking={budget},thinking_n_ignore=2,thinking_n_ignore_str=' Alternatively',temperature=1.0",
            "--output_path",
            "out",
            "--log_samples",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((tmp_path / "out").iterdir())
    samples_file = next(run_dir.glob("samples_m1_e2e_local_*.jsonl"))
    records_file = next(run_dir.glob("m1_generations_m1_e2e_local_*.jsonl"))
    assert records_file.name.split("_")[-1] == samples_file.name.split("_")[-1]  # same timestamp
    samples = read_jsonl(samples_file)
    records = {(r["doc_id"], r["prompt_hash"]): r for r in read_jsonl(records_file)}
    assert len(samples) == len(records) == 8

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    early = 0
    for sample in samples:
        text = sample["resps"][0][0]
        record = records[(sample["doc_id"], sample["prompt_hash"])]
        assert record["doc_hash"] == sample["doc_hash"]  # lm-eval's own hash of the document joins them exactly
        assert text.startswith("<|im_start|>think\n") and "<|im_start|>answer" in text
        thinking = text[len("<|im_start|>think\n") :].rpartition("<|im_start|>answer")[0]
        assert len(tokenizer(thinking.rstrip("\n"), add_special_tokens=False)["input_ids"]) <= budget
        assert record["thinking_tokens"] <= budget
        assert text.count("Alternatively") == record["ignore_rounds"]
        if not record["budget_hit"]:
            early += 1
            assert record["ignore_rounds"] == 2
    assert early >= 2
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    assert "m1_e2e_local" in results["results"]
    assert "PyTorch version" in results["pretty_env_info"]  # torch's report, collected while the model generated


@pytest.mark.cli
def test_lm_eval_builtin_models_still_resolve(tmp_path):
    code = (
        "from lm_eval.api.registry import get_model, model_registry\n"
        "print(get_model('hf').__name__)\n"
        "print(sorted(n for n in ('vllm', 'hf', 'm1-vllm', 'dummy') if n in model_registry))\n"
        "print(model_registry._objs['vllm'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "HFLM"
    assert lines[1] == "['dummy', 'hf', 'm1-vllm', 'vllm']"
    assert lines[2] == "lm_eval.models.vllm_causallms:VLLM"


@pytest.mark.cli
def test_hook_is_idempotent_lazy_and_can_be_switched_off(tmp_path):
    code = (
        "import sys\n"
        "import m1_eval.lm_eval_hook as hook\n"
        "print('lm_eval' in sys.modules, 'vllm' in sys.modules)\n"
        "hook.install(); hook.install()\n"
        "print(sum(type(f).__name__ == 'M1EvalFinder' for f in sys.meta_path))\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "get_model('dummy')\n"
        "print('m1-vllm' in model_registry, 'vllm' in sys.modules)\n"
        "from lm_eval.tasks import TaskManager\n"
        "from m1_tasks.paths import task_dir\n"
        "manager = TaskManager(None, '/nonexistent-user-path')  # include_path given by position\n"
        "print([str(p) for p in manager.include_path] == [str(task_dir()), '/nonexistent-user-path'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["False False", "1", "True False", "True"]
    off_code = (
        "import sys\n"
        "from lm_eval.api.registry import get_model, model_registry\n"
        "get_model('dummy')\n"
        "print('m1-vllm' in model_registry, any(type(f).__name__ == 'M1EvalFinder' for f in sys.meta_path))\n"
    )
    off = subprocess.run(
        [sys.executable, "-c", off_code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "M1_EVAL_DISABLE_HOOK": "1"},
    )
    assert off.stdout.strip() == "False False"


def _assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    # the error is one line; vLLM's worker processes may still log their shutdown after it
    lines = [line for line in result.stderr.splitlines() if line.startswith("lm_eval: error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    for needle in needles:
        assert needle in line
    return line


@pytest.mark.cli
def test_missing_model_folder_is_one_line(tmp_path, command_forks):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_local_task(tasks)
    result = command_forks.run(
        "lm_eval",
        [
            "--model",
            "m1-vllm",
            "--model_args",
            "pretrained=./no-such-model",
            "--tasks",
            "m1_e2e_local",
            "--include_path",
            str(tasks),
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(result, "pretrained=./no-such-model", "local model folder")


@pytest.mark.cli
@pytest.mark.engine
def test_bad_gen_kwarg_is_one_line_before_generation(tiny_model, tmp_path, command_forks):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_local_task(tasks)
    args = [
        "--model",
        "m1-vllm",
        "--model_args",
        f"pretrained={tiny_model},max_model_len=1024",
        "--tasks",
        "m1_e2e_local",
        "--include_path",
        str(tasks),
        "--apply_chat_template",
        "--gen_kwargs",
        "max_tokens_thinking=0",
        "--limit",
        "2",
    ]
    result = command_forks.run("lm_eval", args, cwd=tmp_path)
    _assert_one_line_error(result, "max_tokens_thinking=0", ">= 1")
    _assert_engine_never_started(result)


def _assert_engine_never_started(result) -> None:
    """vLLM logs these at engine start and weight loading; a user error must come before both."""
    for engine_line in ("Initializing a V1 LLM engine", "Starting to load model"):
        assert engine_line not in result.stderr, result.stderr[-2000:]


@pytest.mark.cli
@pytest.mark.engine
def test_bad_model_arg_is_one_line_before_the_engine_starts(tiny_model, tmp_path, command_forks):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_local_task(tasks)
    args = ["--model", "m1-vllm", "--tasks", "m1_e2e_local", "--include_path", str(tasks), "--limit", "1"]
    result = command_forks.run(
        "lm_eval", [*args, "--model_args", f"pretrained={tiny_model},max_model_len=1024,tensor_paralel_size=2"],
        cwd=tmp_path,
    )  # fmt: skip
    _assert_one_line_error(result, "'tensor_paralel_size'", "vllm.EngineArgs")
    _assert_engine_never_started(result)
    result = command_forks.run("lm_eval", [*args, "--model_args", f"pretrained={tiny_model},max_model_len=99999"],
                               cwd=tmp_path)  # fmt: skip
    _assert_one_line_error(result, "max_model_len", "99999")
    _assert_engine_never_started(result)


def test_the_environment_report_is_collected_once_in_the_background_and_is_torchs(monkeypatch):
    """The hook's add_env_info writes what torch's get_pretty_env_info returns, collected by the thread an m1
    model starts, and leaves torch's function as it was."""
    import lm_eval.evaluator
    import torch.utils.collect_env as collect_env

    from m1_models import env_report

    assert getattr(lm_eval.evaluator.add_env_info, env_report.WRAPPED_ATTR, False)
    monkeypatch.setattr(env_report, "_STATE", {})
    calls = []
    real = collect_env.get_pretty_env_info

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(collect_env, "get_pretty_env_info", counted)
    env_report.prefetch()
    env_report.prefetch()  # once per process
    first, second = {}, {}
    lm_eval.evaluator.add_env_info(first)
    lm_eval.evaluator.add_env_info(second)
    assert len(calls) == 1
    assert first["pretty_env_info"] == second["pretty_env_info"] == env_report.collected_text()
    assert "PyTorch version" in first["pretty_env_info"]
    assert collect_env.get_pretty_env_info is counted  # restored after each report
