"""The plain ``lm_eval`` command, in a subprocess, from a folder outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import helpers
from tests.helpers import PARTIAL, REPO, needs_partial, read_jsonl, run_lm_eval

QUESTIONS = [
    ("Which organ produces insulin?", {"A": "liver", "B": "pancreas", "C": "kidney", "D": "spleen"}, "B"),
    ("Which vitamin deficiency causes scurvy?", {"A": "vitamin A", "B": "vitamin D", "C": "vitamin C"}, "C"),
    ("Which blood cells carry oxygen?", {"A": "red cells", "B": "platelets", "C": "neutrophils"}, "A"),
    ("Which nerve is affected in carpal tunnel syndrome?", {"A": "ulnar", "B": "radial", "C": "median"}, "C"),
]


def write_local_task(folder):
    prompts = [q + "\n" + "\n".join(f"{k}. {v}" for k, v in o.items()) for q, o, _ in QUESTIONS * 2]
    helpers.write_local_task(folder, "m1_e2e_local", prompts, {"until": [], "max_gen_toks": 64})


#: the thinking budget of the budget-forced run, and the documents it takes from each task (--limit)
BUDGET, LIMIT = 250, 8
TABLE1 = [
    "m1_medmcqa", "m1_medqa", "m1_pubmedqa", "m1_mmlu_pro_med", "m1_gpqa_med",
    "m1_lancet", "m1_medbullets_op4", "m1_medbullets_op5", "m1_medxpertqa", "m1_nejm",
]  # fmt: skip


@pytest.fixture(scope="module")
def forced_run(tiny_model, tmp_path_factory):
    """One ``lm_eval`` run of m1-vllm with budget forcing (sampled, two " Alternatively" rounds): a small local
    task (``--include_path``) and, where the m1 evaluation data is at hand, every m1 task as users name them
    (``m1_table1``, ``m1_hle``: no --include_path needed), ``--limit 8``.  Returns (its folder, the m1 tasks run)."""
    tmp = tmp_path_factory.mktemp("forced_run")
    tasks = tmp / "tasks"
    tasks.mkdir()
    write_local_task(tasks)
    names, env = ["m1_e2e_local"], {}
    if PARTIAL.exists():
        data = json.loads(PARTIAL.read_text())
        data.update(json.loads((REPO / "tests" / "fixtures" / "lancet_nejm.json").read_text()))  # not in the partial
        local = tmp / "m1_eval_data.json"
        local.write_text(json.dumps(data))
        names += ["m1_table1", "m1_hle"]
        env["M1_EVAL_DATA"] = str(local)
    gen_kwargs = (
        f"max_tokens_thinking={BUDGET},thinking_n_ignore=2,thinking_n_ignore_str=' Alternatively',temperature=1.0,"
        f"max_tokens_answer=32"
    )
    result = run_lm_eval(
        [
            "--model", "m1-vllm",
            # the model's whole window: some m1 questions take ~1,900 of the tiny tokenizer's tokens
            "--model_args", f"pretrained={tiny_model},max_model_len=4096",
            "--tasks", ",".join(names),
            "--include_path", str(tasks),
            "--limit", str(LIMIT),
            "--apply_chat_template",
            "--gen_kwargs", gen_kwargs,
            "--output_path", "out",
            "--log_samples",
        ],  # fmt: skip
        cwd=tmp,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "out", names[1:]


@pytest.mark.cli
@pytest.mark.engine
def test_lm_eval_runs_m1_vllm_with_budget_forcing(tiny_model, forced_run):
    out, _ = forced_run
    run_dir = next(out.iterdir())
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
        assert len(tokenizer(thinking.rstrip("\n"), add_special_tokens=False)["input_ids"]) <= BUDGET
        assert record["thinking_tokens"] <= BUDGET
        assert text.count("Alternatively") == record["ignore_rounds"]
        if not record["budget_hit"]:
            early += 1
            assert record["ignore_rounds"] == 2
    assert early >= 2
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    assert "m1_e2e_local" in results["results"]
    assert "PyTorch version" in results["pretty_env_info"]  # torch's report, collected while the model generated


@pytest.mark.cli
@pytest.mark.engine
@needs_partial
def test_every_m1_task_runs_with_budget_forcing(forced_run, tmp_path):
    """The m1 tasks under the plain ``lm_eval`` command on the tiny model (no --include_path for them)."""
    out, m1_tasks = forced_run
    assert m1_tasks == ["m1_table1", "m1_hle"]
    run_dir = next(out.iterdir())
    results = json.loads(next(run_dir.glob("results_*.json")).read_text())
    for task in [*TABLE1, "m1_hle"]:
        samples = read_jsonl(next(run_dir.glob(f"samples_{task}_*.jsonl")))
        expected = {"m1_lancet": 4, "m1_nejm": 3}.get(task, LIMIT)  # the two fixture tasks have 4 and 3 documents
        assert len(samples) == expected
        for sample in samples:
            assert {"acc", "acc_strict", "no_answer"} <= set(sample)
            assert sample["acc"] in (0, 1) and sample["acc_strict"] <= sample["acc"]
            prompt = sample["arguments"]["gen_args_0"]["arg_0"]
            assert prompt.rstrip().endswith(
                "Return your final response within \\boxed{}.<|im_end|>\n<|im_start|>assistant"
            )
            assert sample["resps"][0][0].startswith("<|im_start|>think\n")
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert len(records) == expected and all(r["thinking_tokens"] <= BUDGET for r in records)
    group = results["results"]["m1_table1"]
    mean = sum(results["results"][t]["acc,none"] for t in TABLE1) / len(TABLE1)
    assert group["acc,none"] == pytest.approx(mean)  # the paper's Avg: unweighted mean of the ten
    check_report_reads_the_run(out, results, run_dir, tmp_path / "report")


def check_report_reads_the_run(out, results, run_dir, report_dir):
    """m1-report on real m1-vllm output: every number equals lm-eval's results and the m1 records."""
    import pandas as pd

    from m1_reports.cli import main as report_main

    assert report_main([str(out), "--out", str(report_dir), "--baseline", "HuatuoGPT-o1-8B", "-q"]) == 0
    run_tasks = pd.read_csv(report_dir / "run_tasks.csv").set_index("task")
    for task in [*TABLE1, "m1_hle"]:
        row = run_tasks.loc[task]
        assert row["acc"] == pytest.approx(results["results"][task]["acc,none"])
        assert row["acc_strict"] == pytest.approx(results["results"][task]["acc_strict,none"])
        records = read_jsonl(next(run_dir.glob(f"m1_generations_{task}_*.jsonl")))
        assert row["thinking_tokens_mean"] == pytest.approx(sum(r["thinking_tokens"] for r in records) / len(records))
        assert row["budget"] == BUDGET
    table = pd.read_csv(report_dir / "table1.csv").set_index("model")
    ours = table[table["source"] == "run"].iloc[0]
    assert ours["Avg"] == pytest.approx(100 * results["results"]["m1_table1"]["acc,none"], abs=0.01)
    assert "HuatuoGPT-o1-8B" in table.index


@pytest.mark.cli
def test_hook_is_idempotent_lazy_and_can_be_switched_off_and_builtin_models_still_resolve(tmp_path):
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
        # lm-eval's own models resolve beside ours
        "print(get_model('hf').__name__)\n"
        "print(sorted(n for n in ('vllm', 'hf', 'm1-vllm', 'dummy') if n in model_registry))\n"
        "print(model_registry._objs['vllm'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "False False", "1", "True False", "True",
        "HFLM", "['dummy', 'hf', 'm1-vllm', 'vllm']", "lm_eval.models.vllm_causallms:VLLM",
    ]  # fmt: skip
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
