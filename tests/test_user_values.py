"""Every user value parsed once, strictly, before work starts: a table of good, bad and edge values for every
gen_kwarg, every m1-vllm and m1-hf model_arg and the m1-sweep flags (m1-server's model_args:
``tests/test_server_model_args.py``; m1-report's flags: ``tests/test_report_flags.py``).

Each good value must mean what the README says; each bad one must be the project's one-line user error naming the
key, raised before anything loads (the constructors here stop before any weights or engine: a bad value fails
before vLLM is even asked about the model).  Values are given as lm-eval's command line hands them over
(``lm_eval._cli.utils.handle_cli_value_string``: ``true`` -> True, ``-5`` -> -5.0, ``inf`` -> inf, ``None`` ->
None, ``'5'`` -> "5"), and the last tests run the real commands for the exit code and the single line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from m1_base import values
from m1_base.errors import GenKwargsError, ModelArgsError, SweepError
from m1_models.settings import parse_gen_kwargs

SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "min_p", "seed"})
BAD = object()  # expected value of a case that must be an error


def cli(text: str) -> Any:
    """A value as lm-eval's command line converts it."""
    from lm_eval._cli.utils import handle_cli_value_string

    return handle_cli_value_string(text)


# -- the parsers ------------------------------------------------------------------------------------------------
PARSER_CASES = [
    # (parser, options, value, expected)
    (values.boolean, {}, True, True),
    (values.boolean, {}, "yes", True),
    (values.boolean, {}, "ON", True),
    (values.boolean, {}, "off", False),
    (values.boolean, {}, 0, False),
    (values.boolean, {}, "ture", BAD),
    (values.boolean, {}, 2, BAD),
    (values.boolean, {}, None, BAD),
    (values.boolean, {}, "", BAD),
    (values.whole, {}, -5.0, -5),
    (values.whole, {}, "12", 12),
    (values.whole, {}, 1.5, BAD),
    (values.whole, {}, True, BAD),
    (values.whole, {}, math.inf, BAD),
    (values.whole, {}, math.nan, BAD),
    (values.whole, {}, "abc", BAD),
    (values.whole, {"minimum": 0}, -1, BAD),
    (values.whole, {"optional": True}, "none", None),
    (values.whole, {"optional": True}, "", None),
    (values.whole, {}, "none", BAD),
    (values.token_count, {}, 0, BAD),
    (values.token_count, {}, 2**40, BAD),
    (values.token_count, {}, "1e3", BAD),
    (values.token_count, {}, 1e3, 1000),
    (values.number, {}, "0.5", 0.5),
    (values.number, {}, math.inf, BAD),
    (values.number, {}, "nan", BAD),
    (values.number, {}, False, BAD),
    (values.probability, {}, 0.0, BAD),
    (values.probability, {"zero": True}, 0, 0.0),
    (values.probability, {}, 1.5, BAD),
    (values.text, {}, "x", "x"),
    (values.text, {}, "", BAD),
    (values.text, {"empty": True}, "", ""),
    (values.text, {}, "none", BAD),
    (values.text, {}, None, BAD),
    (values.text, {}, 5, BAD),
    (values.texts, {}, "a", ("a",)),
    (values.texts, {}, ["a", "b"], ("a", "b")),
    (values.texts, {}, ["a", ""], BAD),
    (values.texts, {}, "", BAD),
    (values.texts, {}, 5, BAD),
]


@pytest.mark.parametrize(("parse", "options", "value", "expected"), PARSER_CASES)
def test_each_parser_accepts_the_documented_spellings_only(parse, options, value, expected):
    source = values.Source("model_arg", ModelArgsError)
    if expected is BAD:
        with pytest.raises(ModelArgsError) as caught:
            parse(value, "key", source, **options)
        message = str(caught.value)
        assert "\n" not in message and message.startswith("model_arg key=")
    else:
        assert parse(value, "key", source, **options) == expected


# -- gen_kwargs -------------------------------------------------------------------------------------------------
def forcing(settings) -> Any:
    return settings.forcing


GEN_KWARG_CASES = [
    # (gen_kwargs as typed, what the settings must hold (a function of them) or BAD)
    ("max_tokens_thinking=512", lambda s: s.forcing.max_tokens_thinking == 512),
    ("max_tokens_thinking=auto", lambda s: s.forcing.max_tokens_thinking == "auto"),
    ("max_tokens_thinking=none", lambda s: not s.forcing.forced),
    ("max_tokens_thinking=None", lambda s: not s.forcing.forced),
    ("max_tokens_thinking=", BAD),  # an unset $B
    ("max_tokens_thinking=true", BAD),  # was a 1-token budget
    ("max_tokens_thinking=inf", BAD),  # was an OverflowError
    ("max_tokens_thinking=1.5", BAD),
    ("max_tokens_thinking=0", BAD),
    ("max_tokens_thinking=-5", BAD),
    ("max_tokens_thinking=512,thinking_n_ignore=2", lambda s: s.forcing.thinking_n_ignore == 2),
    ("max_tokens_thinking=512,thinking_n_ignore=true", BAD),  # was one round
    ("max_tokens_thinking=512,thinking_n_ignore=1.5", BAD),
    ("max_tokens_thinking=512,thinking_n_ignore=-1", BAD),
    ("max_tokens_thinking=512,thinking_n_ignore_str=none", BAD),  # inserted the text "None"
    ("max_tokens_thinking=512,thinking_n_ignore_str=None", BAD),
    ("max_tokens_thinking=512,thinking_n_ignore_str=Hmm", lambda s: s.forcing.thinking_n_ignore_str == "Hmm"),
    ("max_tokens_thinking=512,thinking_n_ignore_str=''", lambda s: s.forcing.thinking_n_ignore_str == ""),
    ("max_tokens_thinking=512,thinking_end=none", BAD),
    ("max_tokens_thinking=512,thinking_start=", BAD),
    ("max_tokens_thinking=512,thinking_end_overflow=None", BAD),
    ("max_tokens_thinking=512,until_thinking=true", BAD),  # was a TypeError
    ("max_tokens_thinking=512,until_thinking=['<|im_end|>']", lambda s: s.forcing.until_thinking == ("<|im_end|>",)),
    ("max_tokens_thinking=512,until_thinking_2=STOP", lambda s: s.forcing.until_thinking[-1] == "STOP"),
    ("max_tokens_thinking=512,max_tokens_answer=none", BAD),  # was 256, not the documented 1024
    ("max_tokens_thinking=512,max_tokens_answer=inf", BAD),
    ("max_tokens_thinking=512,max_tokens_answer=64", lambda s: s.forcing.max_tokens_answer == 64),
    ("max_tokens_thinking=512", lambda s: s.forcing.max_tokens_answer == 1024),
    ("max_tokens_thinking=512,budget_preset=s2", BAD),
    ("max_tokens_thinking=512,budget_preset=s1", lambda s: s.forcing.budget_preset == "s1"),
    ("until=5", BAD),  # was a TypeError
    ("until=", BAD),  # vLLM rejects an empty stop string, after the engine started
    ("until=['a','']", BAD),
    ("until='5'", lambda s: s.until == ("5",)),
    ("until=['Q:','\\n\\n']", lambda s: s.until == ("Q:", "\n\n")),
    ("max_gen_toks=inf", BAD),
    ("max_gen_toks=0", BAD),
    ("max_gen_toks=64", lambda s: s.max_gen_toks == 64),
    ("do_sample=false", lambda s: s.sampling["temperature"] == 0.0),
    ("do_sample=off", lambda s: s.sampling["temperature"] == 0.0),
    ("do_sample=on", lambda s: "temperature" not in s.sampling),  # was greedy
    ("do_sample=ture", BAD),  # was greedy
    ("do_sample=false,temperature=0.6", lambda s: s.sampling["temperature"] == 0.6),
    ("temperature=none", BAD),  # m1-hf took it as greedy for seeding and sampled at 1.0
    ("temperature=-1", BAD),
    ("temperature=inf", BAD),
    ("top_p=0", BAD),
    ("top_p=1.5", BAD),
    ("top_k=1.5", BAD),
    ("min_p=0", lambda s: s.sampling["min_p"] == 0),
    ("seed=1.7", BAD),
    ("seed=true", BAD),
    ("seed=abc", BAD),
    ("seed=7", lambda s: s.sampling["seed"] == 7),
    ("thinking_n_ignore=1", BAD),  # no effect without a budget: said, not ignored
]


def parse_cli_gen_kwargs(text: str) -> dict[str, Any]:
    from lm_eval._cli.utils import key_val_to_dict

    return key_val_to_dict(text)


@pytest.mark.parametrize(("typed", "expected"), GEN_KWARG_CASES)
def test_gen_kwargs_table(typed, expected):
    gen_kwargs = parse_cli_gen_kwargs(typed)
    if expected is BAD:
        with pytest.raises(GenKwargsError) as caught:
            parse_gen_kwargs(gen_kwargs, SAMPLING_KEYS)
        message = str(caught.value)
        key = typed.rpartition(",")[2].partition("=")[0]
        assert "\n" not in message and key in message, message
    else:
        assert expected(parse_gen_kwargs(gen_kwargs, SAMPLING_KEYS)), typed


# -- model_args of m1-vllm and m1-hf -----------------------------------------------------------------------------
MODEL_ARG_CASES = [
    # (model_args added to pretrained=<tiny model>, what the model must hold, or BAD)
    ("seed=7", lambda lm: lm.seed == 7),
    ("seed=abc", BAD),
    ("seed=none", BAD),
    ("seed=None", BAD),
    ("seed=1.7", BAD),  # was 1
    ("seed=true", BAD),  # was 1
    ("seed=-1", BAD),
    ("max_model_len=512", lambda lm: lm.max_model_len == 512),
    ("max_model_len=1.5", BAD),  # was 1
    ("max_model_len=0", BAD),  # was the model's window
    ("max_model_len=abc", BAD),  # was a traceback
    ("max_model_len=inf", BAD),
    ("add_bos_token=yes", lambda lm: lm.add_bos_token is True),  # was silently False
    ("add_bos_token=false", lambda lm: lm.add_bos_token is False),
    ("add_bos_token=maybe", BAD),
    ("trust_remote_code=maybe", BAD),
    ("schedule=rounds", lambda lm: lm.schedule == "rounds"),
    ("schedule=fast", BAD),
    ("pretrained=", BAD),
]
VLLM_ONLY_CASES = [
    ("gpu_memory_utilization=abc", BAD),  # was a traceback
    ("gpu_memory_utilization=0", BAD),
    ("gpu_memory_utilization=1.5", BAD),
    ("gpu_memory_utilization=0.2", lambda lm: lm._llm_args["gpu_memory_utilization"] == 0.2),
    ("sessions=yes", lambda lm: lm._use_sessions is True),
    ("sessions=no", lambda lm: lm._use_sessions is False),
    ("sessions=maybe", BAD),
    ("data_parallel_size=0", BAD),
    ("data_parallel_size=1.5", BAD),
    ("data_parallel_size=true", BAD),
]
HF_ONLY_CASES = [
    ("batch_size=4", lambda lm: lm.batch_size == 4),
    ("batch_size=auto", lambda lm: lm.batch_size >= 1),
    ("batch_size=0", BAD),
    ("batch_size=1.5", BAD),
    ("dtype=float33", BAD),
]


def build(model_cls: type, tiny_model: Path, typed: str, **fixed: Any) -> Any:
    from lm_eval._cli.utils import key_val_to_dict

    args = {"pretrained": str(tiny_model), **fixed, **key_val_to_dict(typed)}
    return model_cls.create_from_arg_obj(args, {"batch_size": 1, "device": None})


def check_model_arg(model_cls: type, tiny_model: Path, typed: str, expected: Any, **fixed: Any) -> None:
    if expected is BAD:
        with pytest.raises(ModelArgsError) as caught:
            build(model_cls, tiny_model, typed, **fixed)
        message = str(caught.value)
        assert "\n" not in message and typed.partition("=")[0] in message, message
    else:
        lm = build(model_cls, tiny_model, typed, **fixed)
        try:
            assert expected(lm), typed
        finally:
            lm.close()


@pytest.mark.engine  # imports vLLM and reads the model's config (no weights, no engine)
@pytest.mark.parametrize(("typed", "expected"), MODEL_ARG_CASES + VLLM_ONLY_CASES)
def test_m1_vllm_model_args_table(tiny_model, typed, expected, monkeypatch):
    import vllm

    from m1_models.vllm_model import M1VLLM

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine must not start while the model_args are checked")

    monkeypatch.setattr(vllm, "LLM", no_engine)
    check_model_arg(M1VLLM, tiny_model, typed, expected, max_model_len=1024)


@pytest.mark.parametrize(("typed", "expected"), MODEL_ARG_CASES + HF_ONLY_CASES)
def test_m1_hf_model_args_table(tiny_model, typed, expected, monkeypatch):
    import transformers

    from m1_models.hf_model import M1HF

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights must not load while the model_args are checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    check_model_arg(M1HF, tiny_model, typed, expected, device="cpu", max_model_len=1024)


def test_a_model_arg_given_twice_is_an_error_in_the_python_api_too(tiny_model):
    from m1_models.hf_model import M1HF

    with pytest.raises(ModelArgsError, match=r"^model_arg seed is given 2 times; give it once$"):
        M1HF.create_from_arg_string(f"pretrained={tiny_model},seed=1,seed=2")


# -- the real commands: exit code 2, one line, nothing started ---------------------------------------------------
@pytest.mark.cli
@pytest.mark.parametrize(
    ("flag", "typed", "needle"),
    [
        ("--model_args", "pretrained=./tiny,seed=1,seed=2", "seed is given 2 times (1, 2)"),
        ("--gen_kwargs", "max_tokens_thinking=512,max_tokens_thinking=1024", "max_tokens_thinking is given 2 times"),
    ],
)
def test_a_key_given_twice_is_one_line_and_exit_2(tmp_path, command_forks, flag, typed, needle):
    args = ["--model", "m1-vllm", "--tasks", "m1_demo_chain", "--model_args", "pretrained=./tiny"]
    if flag == "--model_args":
        args[-1] = typed
    else:
        args += [flag, typed]
    result = command_forks.run("lm_eval", args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and needle in lines[0] and flag in lines[0], result.stderr[-2000:]


@pytest.mark.cli
@pytest.mark.engine
@pytest.mark.parametrize(
    ("model_args", "gen_kwargs", "needle"),
    [
        ("max_model_len=abc", "max_tokens_thinking=64", "model_arg max_model_len='abc' must be a whole number"),
        ("max_model_len=1024", "max_tokens_thinking=64,until=", "gen_kwarg until=(empty) must be a non-empty"),
    ],
)
def test_bad_values_under_lm_eval_are_one_line_before_the_engine(
    tiny_model, tmp_path, command_forks, model_args, gen_kwargs, needle
):
    result = command_forks.run(
        "lm_eval",
        ["--model", "m1-vllm", "--model_args", f"pretrained={tiny_model},{model_args}", "--tasks", "m1_demo_chain",
         "--limit", "2", "--gen_kwargs", gen_kwargs, "-o", "out"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lm_eval: error: ")]
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]
    for engine_line in ("Initializing a V1 LLM engine", "Starting to load model"):
        assert engine_line not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


# -- m1-sweep's flags ---------------------------------------------------------------------------------------------
@pytest.mark.cli
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--budgets", "inf"], "--budgets 'inf' must be a whole number >= 1"),
        (["--budgets", "4,0"], "--budgets '0' must be a whole number >= 1"),
        (["--budgets", "4", "--ignores", "x"], "--ignores 'x' must be a whole number"),
        (["--budgets", "4", "--ignores", "-1"], "--ignores '-1' must be a whole number"),
        (["--budgets", "4", "--samples", "4"], "--samples 4 is lm-eval's choice of documents"),
        (["--budgets", "4", "--gen_kwargs", "max_tokens_answer=none"], "gen_kwarg max_tokens_answer='none'"),
        (["--budgets", "4", "-o", "FILE"], "is a file, not a folder"),
    ],
)
def test_m1_sweep_flags_are_one_line_before_the_model_loads(tiny_model, tmp_path, command_forks, extra, needle):
    (tmp_path / "FILE").write_text("not a folder")
    args = ["--model", "m1-hf", "--model_args", f"pretrained={tiny_model},device=cpu", "--tasks",
            "m1_demo_chain", "--limit", "2", "-o", "out", "--verbosity", "INFO", *extra]  # fmt: skip
    result = command_forks.run("m1-sweep", args, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and needle in lines[0], result.stderr[-2000:]
    assert "m1 generate" not in result.stderr and "loading" not in result.stderr.lower()


def test_m1_sweep_output_folder_that_cannot_be_written_is_found_before_the_model_loads(tmp_path):
    from m1_eval.sweep import check_output_folder

    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(SweepError, match="cannot be written"):
        check_output_folder(tmp_path / "file" / "below")  # a folder under a file cannot be made
    check_output_folder(tmp_path / "new" / "sweep")
    assert (tmp_path / "new" / "sweep").is_dir() and not any((tmp_path / "new" / "sweep").iterdir())
