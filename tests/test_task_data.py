"""The m1 data loader, the prompt and the functions the task YAMLs call (no lm-eval task building here)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from m1_base.errors import M1UserError
from m1_tasks import data, prompt, task_utils
from m1_tasks.benchmarks import EXPECTED_COUNTS
from m1_tasks.data import M1DataError
from tests.helpers import PARTIAL, needs_partial

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARTIAL_SOURCES = [
    "MedMCQA_validation",
    "MedQA_USLME_test",
    "PubMedQA_test",
    "MMLU-Pro_Medical_test",
    "GPQA_Medical_test",
    "MedBullets_op4",
    "MedBullets_op5",
    "MedXpertQA",
    "HumanityLastExam",
]
PLAIN_INSTRUCTION = "Return your final response within \\boxed{}."
COT_INSTRUCTION = "Let's think step by step. Return your final response within \\boxed{}."


pytestmark = pytest.mark.usefixtures("clean_m1_env")


@contextlib.contextmanager
def captured_logs(name: str = "lm_eval.m1_tasks"):
    """Records of our loggers (children of ``lm_eval``, which stops propagation once lm-eval sets up logging)."""
    records: list[logging.LogRecord] = []

    class _Handler(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _Handler(level=logging.INFO)
    target = logging.getLogger(name)
    old_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def write_json(path: Path, payload) -> Path:
    path.write_text(json.dumps(payload))
    return path


def record(question="Which option?", options=None, answer="first", answer_idx="A"):
    return {
        "question": question,
        "options": {"A": "first", "B": "second"} if options is None else options,
        "answer": answer,
        "answer_idx": answer_idx,
    }


def expected_prompt(question: str, options: dict[str, str], instruction: str = PLAIN_INSTRUCTION) -> str:
    return question + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items()) + "\n" + instruction


# --------------------------------------------------------------------------------------------------- prompt


def test_prompt_text_exactly():
    text = prompt.render_prompt("What is the capital of X?", {"A": "Foo", "B": "Bar baz", "C": "Qux"})
    assert text == "What is the capital of X?\nA. Foo\nB. Bar baz\nC. Qux\nReturn your final response within \\boxed{}."
    assert text.endswith("within \\boxed{}.")  # one backslash in the text
    assert "\\\\" not in text


def test_cot_prompt_text_exactly():
    text = prompt.render_prompt("Q?", {"A": "x", "B": "y"}, "cot")
    assert text == "Q?\nA. x\nB. y\nLet's think step by step. Return your final response within \\boxed{}."


def test_prompt_keeps_option_order_and_accepts_every_options_form():
    options = {"B": "second", "A": "first", "D": "fourth"}  # the record's order, not sorted
    expected = "Q\nB. second\nA. first\nD. fourth\n" + PLAIN_INSTRUCTION
    rows = prompt.options_rows(options)
    assert rows == [
        {"letter": "B", "text": "second"},
        {"letter": "A", "text": "first"},
        {"letter": "D", "text": "fourth"},
    ]
    for form in (
        options,
        rows,
        json.dumps(options),
        json.dumps(rows),
        [["B", "second"], ["A", "first"], ["D", "fourth"]],
    ):
        assert prompt.render_prompt("Q", form) == expected
        assert list(prompt.options_dict(form).items()) == list(options.items())


def test_prompt_variant_precedence_task_then_metadata_then_env():
    assert prompt.resolve_variant(None, None, {}) == ("plain", "default")
    assert prompt.resolve_variant(None, None, {"M1_PROMPT": "cot"}) == ("cot", "env")
    assert prompt.resolve_variant(None, "plain", {"M1_PROMPT": "cot"}) == ("plain", "metadata")
    assert prompt.resolve_variant(None, "CoT", {}) == ("cot", "metadata")
    assert prompt.resolve_variant("cot", "plain", {"M1_PROMPT": "plain"}) == ("cot", "task")
    assert prompt.resolve_variant(None, "default", {}) == ("plain", "metadata")


@pytest.mark.parametrize(
    ("task", "meta", "env", "named"),
    [(None, "cto", {}, "metadata"), (None, None, {"M1_PROMPT": "steps"}, "M1_PROMPT"), ("x", None, {}, "task config")],
)
def test_unknown_prompt_variant_is_a_one_line_user_error(task, meta, env, named):
    with pytest.raises(M1UserError) as info:
        prompt.resolve_variant(task, meta, env)
    message = str(info.value)
    assert named in message and "plain, cot" in message and "\n" not in message


# ------------------------------------------------------------------------------------------ the partial file


@needs_partial
@pytest.mark.parametrize("source", PARTIAL_SOURCES)
def test_every_record_of_the_partial_file_loads_and_renders(source):
    records = data.load_source(source, PARTIAL)
    assert len(records) == EXPECTED_COUNTS[source]
    mismatched = set(data.mismatched_indices(source, PARTIAL))
    for rec in records:
        assert (rec["answer"].strip() == rec["options"][rec["answer_idx"]].strip()) is (rec["index"] not in mismatched)
        text = prompt.render_prompt(rec["question"], rec["options"])
        assert text == expected_prompt(rec["question"], rec["options"])
        assert text.startswith(rec["question"] + "\n")
    # through Arrow and back: same prompt, options in the same order
    test = data.build_dataset(source, data=PARTIAL)["test"]
    assert test.num_rows == len(records)
    for doc, rec in zip(test, records, strict=True):
        assert doc["index"] == rec["index"] and doc["source"] == source and doc["prompt_variant"] == "plain"
        assert task_utils.doc_to_text(doc) == expected_prompt(rec["question"], rec["options"])
        assert task_utils.scoring_doc(doc)["options"] == rec["options"]


@needs_partial
def test_humanity_last_exam_keeps_every_record_as_m1_scores_them():
    raw = json.loads(PARTIAL.read_text())["HumanityLastExam"]
    assert len(raw) == 103
    data.clear_cache()
    with captured_logs() as logs:
        records = data.load_source("HumanityLastExam", PARTIAL)
    assert len(records) == 103 == EXPECTED_COUNTS["HumanityLastExam"]
    mismatched = data.mismatched_indices("HumanityLastExam", PARTIAL)
    assert len(mismatched) == 1
    bad = raw[mismatched[0]]
    assert bad["answer"].strip() != bad["options"][bad["answer_idx"]].strip()
    assert mismatched[0] in {r["index"] for r in records}  # kept, scored against answer_idx
    # a local file: a WARNING naming the task and the index, and how to drop it
    warned = [r.getMessage() for r in logs if r.levelname == "WARNING"]
    assert any("m1_hle" in m and f"index {mismatched[0]}" in m and "drop_mismatched" in m for m in warned), warned
    # asked to drop: 102
    data.clear_cache()
    with captured_logs() as logs:
        assert len(data.load_source("HumanityLastExam", PARTIAL, drop_mismatched=True)) == 102
    warned = [r.getMessage() for r in logs if r.levelname == "WARNING"]
    assert any("dropped 1 record" in m for m in warned)
    assert any("102 documents, the paper evaluated 103" in m for m in warned)


@needs_partial
def test_partial_file_is_parsed_once_per_path():
    data.load_source("PubMedQA_test", PARTIAL)
    before = data._parse_file.cache_info()
    data.load_source("MedQA_USLME_test", PARTIAL)
    data.load_source("PubMedQA_test", PARTIAL)
    after = data._parse_file.cache_info()
    assert after.misses == before.misses
    # callers get copies: mutating them does not touch the cache
    first = data.load_source("PubMedQA_test", PARTIAL)
    first[0]["options"]["A"] = "changed"
    assert data.load_source("PubMedQA_test", PARTIAL)[0]["options"]["A"] != "changed"


# ----------------------------------------------------------------------------------- fixtures: Lancet / NEJM


def test_lancet_and_nejm_fixture_records_load_and_mismatch_is_kept_with_a_warning(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    with captured_logs() as logs:
        lancet = data.load_source("Lancet", path)
        nejm = data.load_source("NEJM", path)
    assert [r["index"] for r in lancet] == [0, 1, 2, 3]  # record 2's answer is not its option's text: kept
    assert data.mismatched_indices("Lancet", path) == [2]
    assert [r["index"] for r in nejm] == [0, 1, 2]
    assert any(r.levelname == "WARNING" and "m1_lancet" in r.getMessage() and "index 2" in r.getMessage()
               for r in logs)
    assert [r["index"] for r in data.load_source("Lancet", path, drop_mismatched=True)] == [0, 1, 3]
    lancet = [r for r in lancet if r["index"] != 2]
    # whitespace differences are not mismatches, and the text is kept as the file has it
    padded = lancet[2]
    assert padded["answer"] == " TSH receptor stimulating antibody "
    assert prompt.render_prompt(padded["question"], padded["options"]).startswith("  A 24-year-old woman")
    for rec in lancet + nejm:
        assert task_utils.doc_to_text({**rec, "prompt_variant": "cot"}) == expected_prompt(
            rec["question"], rec["options"], COT_INSTRUCTION
        )


def test_m1_eval_data_env_points_at_a_local_file_and_logs_the_skipped_md5(tmp_path, monkeypatch):
    path = tmp_path / "local.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    monkeypatch.setenv("M1_EVAL_DATA", str(path))
    with captured_logs() as logs:
        nejm = data.load_source("NEJM")
    assert len(nejm) == 3
    messages = [r.getMessage() for r in logs if r.levelno == logging.INFO]
    assert any("M1_EVAL_DATA" in m and str(path) in m and "md5 check skipped" in m for m in messages)


# ------------------------------------------------------------------------------------------------- errors


def test_the_error_class():
    assert issubclass(M1DataError, ValueError) and issubclass(M1DataError, M1UserError)


def test_missing_source_names_the_source_and_the_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    with pytest.raises(M1DataError) as info:
        data.load_source("MedXpertQA", path)
    message = str(info.value)
    assert "'MedXpertQA'" in message and str(path) in message and "M1_EVAL_DATA" in message
    assert "Lancet, NEJM" in message and "\n" not in message


def test_malformed_fixture_records_name_their_index_and_field():
    with pytest.raises(M1DataError) as info:
        data.load_source("NEJM", FIXTURES / "malformed.json")
    message = str(info.value)
    assert "record 1 " in message and "'NEJM'" in message and "'answer_idx'" in message and "missing" in message
    assert "malformed.json" in message
    with pytest.raises(M1DataError, match=r"record 0 .*'Lancet'.*'answer_idx' is 'E', not one of the option letters"):
        data.load_source("Lancet", FIXTURES / "malformed.json")


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"question": "Q", "options": {"A": "x"}, "answer": "x"}, "field 'answer_idx' is missing"),
        ({**record(), "options": ["first", "second"]}, "field 'options' must be a non-empty object"),
        ({**record(), "options": {}}, "field 'options' must be a non-empty object"),
        ({**record(), "options": {"A": "first", "B": 2}}, "field 'options.B' must be a string"),
        ({**record(), "question": None}, "field 'question' must be a string"),
        ({**record(), "question": "  "}, "field 'question' is empty"),
        ({**record(), "answer": 1}, "field 'answer' must be a string"),
        ("just a string", "expected an object"),
    ],
)
def test_malformed_records_name_their_index_and_field(tmp_path, bad, expected):
    path = write_json(tmp_path / "bad.json", {"NEJM": [record(), record(), bad]})
    with pytest.raises(M1DataError) as info:
        data.load_source("NEJM", path)
    message = str(info.value)
    assert message.startswith(f"record 2 of source 'NEJM' in {path}: ") and expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not readable JSON"),
        ("[]", "must be a JSON object mapping a source name"),
        ('{"NEJM": {"a": 1}}', "must be a JSON object mapping a source name"),
    ],
)
def test_unreadable_files_are_data_errors(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(M1DataError, match=expected):
        data.load_source("NEJM", path)


def test_missing_local_file_names_m1_eval_data(tmp_path, monkeypatch):
    monkeypatch.setenv("M1_EVAL_DATA", str(tmp_path / "nope.json"))
    with pytest.raises(M1DataError) as info:
        data.load_source("NEJM")
    assert str(info.value).startswith("M1_EVAL_DATA=") and "no such file" in str(info.value)


@pytest.mark.cli
def test_offline_without_a_local_file_is_one_line_naming_m1_eval_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "M1_EVAL_DATA"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    script = (
        "import sys\n"
        "from m1_tasks.data import M1DataError, load_source\n"
        "try:\n"
        "    load_source('MedQA_USLME_test')\n"
        "except M1DataError as error:\n"
        "    sys.stdout.write(str(error))\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    message = result.stdout
    assert "\n" not in message.strip()
    assert "M1_EVAL_DATA=" in message and "UCSC-VLAA/m1_eval_data" in message and "offline" in message


def _fake_download(monkeypatch, path: Path, calls: list | None = None):
    import huggingface_hub

    def hf_hub_download(repo_id, filename, repo_type=None, **kwargs):
        if calls is not None:
            calls.append((repo_id, filename, repo_type))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)


def test_downloaded_file_with_a_wrong_md5_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "m1_eval_data.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    calls: list = []
    _fake_download(monkeypatch, path, calls)
    with pytest.raises(M1DataError) as info:
        data.load_source("NEJM")
    assert calls == [("UCSC-VLAA/m1_eval_data", "m1_eval_data.json", "dataset")]
    message = str(info.value)
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    assert actual in message and "fe50ce67a958cfa9bc958a51b2502e57" in message and "M1_EVAL_DATA" in message


def test_downloaded_file_with_the_right_md5_loads(tmp_path, monkeypatch):
    path = tmp_path / "m1_eval_data.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    _fake_download(monkeypatch, path)
    monkeypatch.setattr(data, "EXPECTED_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    with captured_logs() as logs:
        # the official file is the paper's evaluation set: every record is scored, even when asked to drop
        assert [r["index"] for r in data.load_source("Lancet", drop_mismatched=True)] == [0, 1, 2, 3]
    messages = [(r.levelname, r.getMessage()) for r in logs]
    assert any("verified" in m for _, m in messages)
    assert any(level == "INFO" and "kept" in m and "index 2" in m for level, m in messages), messages
    # the fixture's 4 Lancet records are not the paper's 412: a WARNING with both numbers
    assert any(level == "WARNING" and "4 documents, the paper evaluated 412" in m for level, m in messages)


# ---------------------------------------------------------------------------------------------- demo data


def test_demo_data_is_well_formed():
    raw = json.loads(data.DEMO_FILE.read_text())
    assert list(raw) == ["m1_demo"]
    records = raw["m1_demo"]
    assert 25 <= len(records) <= 40
    assert len({r["question"] for r in records}) == len(records)
    for rec in records:
        assert set(rec) == {"question", "options", "answer", "answer_idx"}
        assert len(rec["options"]) in (4, 5)
        assert list(rec["options"]) == list("ABCDE"[: len(rec["options"])])
        assert rec["answer"] == rec["options"][rec["answer_idx"]]
        assert len(set(rec["options"].values())) == len(rec["options"])
    assert len({r["answer_idx"] for r in records}) >= 4  # not all the same letter
    assert len(data.load_source("m1_demo", "demo")) == len(records)
    assert data.mismatched_indices("m1_demo", "demo") == []


# ----------------------------------------------------------------------------------- the YAMLs' functions


def test_load_dataset_accepts_lm_eval_kwargs_and_selects_the_prompt(monkeypatch):
    lm_eval_kwargs = {
        "pretrained": "some/model",
        "max_model_len": 4096,
        "version": 1.0,
        "config_source": "/x/m1_demo.yaml",
        "m1_source": "m1_demo",
        "m1_data": "demo",
    }
    plain = task_utils.load_dataset(**lm_eval_kwargs)
    assert list(plain) == ["test"]
    doc = plain["test"][0]
    assert task_utils.doc_to_text(doc).endswith("\n" + PLAIN_INSTRUCTION)
    assert not task_utils.doc_to_text(doc).endswith(COT_INSTRUCTION)

    cot = task_utils.load_dataset(**lm_eval_kwargs, prompt="cot")  # --metadata '{"prompt": "cot"}'
    assert task_utils.doc_to_text(cot["test"][0]).endswith("\n" + COT_INSTRUCTION)

    fixed = task_utils.load_dataset(**lm_eval_kwargs, m1_prompt="cot", prompt="plain")  # the *_cot tasks
    assert fixed["test"][0]["prompt_variant"] == "cot"

    monkeypatch.setenv("M1_PROMPT", "cot")
    assert task_utils.load_dataset(**lm_eval_kwargs)["test"][0]["prompt_variant"] == "cot"
    assert task_utils.load_dataset(**lm_eval_kwargs, prompt="plain")["test"][0]["prompt_variant"] == "plain"


def test_process_results_decodes_options_and_maps_the_scorer(monkeypatch):
    seen = {}

    def score_response(text, doc):
        seen["text"], seen["doc"] = text, doc
        return {"correct": True, "correct_strict": False, "no_answer": False, "extracted": "B"}

    stub = types.ModuleType("m1_tasks.scoring")
    stub.score_response = score_response
    monkeypatch.setitem(sys.modules, "m1_tasks.scoring", stub)
    doc = task_utils.load_dataset(m1_source="m1_demo", m1_data="demo")["test"][0]
    result = task_utils.process_results(doc, ["thinking...\\boxed{B}"])
    assert result == {"acc": 1.0, "acc_strict": 0.0, "no_answer": 0.0}
    assert all(type(v) is float for v in result.values())
    assert seen["text"] == "thinking...\\boxed{B}"
    assert seen["doc"]["options"] == json.loads(data.DEMO_FILE.read_text())["m1_demo"][0]["options"]
    assert seen["doc"]["answer_idx"] == doc["answer_idx"] and seen["doc"]["answer"] == doc["answer"]
    assert isinstance(doc["options"], list)  # the dataset's row is left as it was


def test_process_results_with_the_real_scorer():
    pytest.importorskip("m1_tasks.scoring", reason="m1_tasks/scoring.py is not written yet")
    doc = task_utils.load_dataset(m1_source="m1_demo", m1_data="demo")["test"][0]
    right = doc["answer_idx"]
    wrong = next(row["letter"] for row in doc["options"] if row["letter"] != right)
    good = task_utils.process_results(doc, [f"The answer is \\boxed{{{right}}}."])
    bad = task_utils.process_results(doc, [f"The answer is \\boxed{{{wrong}}}."])
    assert set(good) == {"acc", "acc_strict", "no_answer"}
    assert good["acc"] == 1.0 and good["no_answer"] == 0.0
    assert bad["acc"] == 0.0
