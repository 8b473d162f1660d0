"""The task YAMLs as lm-eval 0.4.13 indexes and builds them (through the start-up hook; no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m1_tasks import data, prompt
from m1_tasks.benchmarks import EXPECTED_COUNTS, GROUPS, TASK_SOURCES
from m1_tasks.paths import task_dir
from tests.helpers import PARTIAL, needs_partial

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TASKS = list(TASK_SOURCES)
FIXTURE_SOURCES = {"Lancet", "NEJM"}  # not in the partial file: taken from tests/fixtures
PLAIN_INSTRUCTION = "\nReturn your final response within \\boxed{}."
COT_INSTRUCTION = "\nLet's think step by step. Return your final response within \\boxed{}."


pytestmark = pytest.mark.usefixtures("clean_m1_env")


@pytest.fixture(scope="module")
def merged_data(tmp_path_factory) -> Path:
    """The shared partial file plus the Lancet/NEJM fixtures, in a temporary file (nothing copied into the repo)."""
    if not PARTIAL.is_file():
        pytest.skip(f"shared m1 data not found at {PARTIAL} (set M1_SHARED_DATA to its folder)")
    merged = json.loads(PARTIAL.read_text())
    merged.update(json.loads((FIXTURES / "lancet_nejm.json").read_text()))
    path = tmp_path_factory.mktemp("m1data") / "m1_eval_data.json"
    path.write_text(json.dumps(merged))
    return path


@pytest.fixture(scope="module")
def fixture_counts() -> dict[str, int]:
    raw = json.loads((FIXTURES / "lancet_nejm.json").read_text())
    return {source: len(data.load_source(source, FIXTURES / "lancet_nejm.json")) for source in raw}


def task_manager(**kwargs):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=str(task_dir()), **kwargs)  # only ours: fast


def build(names, manager=None) -> dict:
    """Tasks by name, as the evaluator gets them (``TaskManager.load``, which ``get_task_dict`` wraps)."""
    return (manager or task_manager()).load(names)["tasks"]


def load_yaml(name: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml as lm_eval_load_yaml

    matches = list(task_dir().rglob(f"{name}.yaml"))
    assert len(matches) == 1, matches
    return lm_eval_load_yaml(matches[0], resolve_func=True)


# --------------------------------------------------------------------------------------------- discovery


@pytest.mark.cli
def test_default_task_manager_lists_every_m1_task_and_group():
    from lm_eval.tasks import TaskManager

    names = set(TaskManager().all_tasks)
    expected = set(TASKS) | set(GROUPS) | {"m1_demo", "m1_demo_chain"}
    assert expected <= names
    assert {f"{n}_cot" for n in expected} <= names
    assert "hellaswag" in names  # lm-eval's own tasks are still there


@pytest.mark.cli
def test_include_defaults_false_indexes_only_the_callers_tasks(tmp_path):
    """``TaskManager(include_defaults=False, include_path=X)`` promises X's tasks only: the hook adds none."""
    from lm_eval.tasks import TaskManager

    (tmp_path / "mine.yaml").write_text("task: mine\ndataset_path: json\noutput_type: generate_until\n")
    assert TaskManager(include_defaults=False, include_path=str(tmp_path)).all_tasks == ["mine"]
    assert "m1_demo" in TaskManager(include_path=str(tmp_path)).all_tasks


def test_yaml_files_parse_with_lm_eval_and_share_the_base_config():
    from m1_tasks import task_utils

    for name, source in TASK_SOURCES.items():
        for task_name, variant in ((name, None), (f"{name}_cot", "cot")):
            cfg = load_yaml(task_name)
            assert cfg["task"] == task_name
            assert cfg["dataset_kwargs"]["m1_source"] == source
            assert cfg["dataset_kwargs"].get("m1_prompt") == variant
            assert cfg["output_type"] == "generate_until"
            assert cfg["custom_dataset"] is task_utils.load_dataset
            assert cfg["doc_to_text"] is task_utils.doc_to_text
            assert cfg["process_results"] is task_utils.process_results
            assert cfg["generation_kwargs"] == {"until": [], "max_gen_toks": 2048, "do_sample": False}
            assert cfg["metric_list"] == [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_strict", "aggregation": "mean", "higher_is_better": True},
                {"metric": "no_answer", "aggregation": "mean", "higher_is_better": False},
            ]
    assert load_yaml("m1_demo")["dataset_kwargs"] == {"m1_source": "m1_demo", "m1_data": "demo"}
    assert load_yaml("m1_demo_chain")["dataset_kwargs"] == {"m1_source": "m1_demo_chain",
                                                            "m1_data": "demo:m1_demo_chain"}


@pytest.mark.parametrize("suffix", ["", "_cot"])
def test_group_yamls_are_unweighted_means_of_their_members(suffix):
    for group, members in GROUPS.items():
        cfg = load_yaml(group + suffix)
        assert cfg["group"] == group + suffix
        assert cfg["task"] == [m + suffix for m in members]
        assert cfg["aggregate_metric_list"] == [
            {"metric": metric, "aggregation": "mean", "weight_by_size": False}
            for metric in ("acc", "acc_strict", "no_answer")
        ]
    assert "m1_hle" not in GROUPS["m1_table1"] and len(GROUPS["m1_table1"]) == 10
    assert GROUPS["m1_huatuo"] == GROUPS["m1_table1"][:5]
    assert GROUPS["m1_hard"] == [*GROUPS["m1_table1"][5:], "m1_hle"]


# ------------------------------------------------------------------------------------------------ building


@needs_partial
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # get_task_dict: deprecated in 0.4.13, still public
def test_every_task_builds_from_the_data_file_and_renders_every_doc(merged_data, fixture_counts, monkeypatch):
    from lm_eval.tasks import get_task_dict

    monkeypatch.setenv("M1_EVAL_DATA", str(merged_data))
    built = get_task_dict(TASKS + [f"{n}_cot" for n in TASKS], task_manager())
    for name, source in TASK_SOURCES.items():
        expected_count = fixture_counts[source] if source in FIXTURE_SOURCES else EXPECTED_COUNTS[source]
        for task_name, instruction in ((name, PLAIN_INSTRUCTION), (f"{name}_cot", COT_INSTRUCTION)):
            task = built[task_name]
            assert task.OUTPUT_TYPE == "generate_until"
            assert task.config.generation_kwargs == {"until": [], "max_gen_toks": 2048, "do_sample": False}
            assert task.higher_is_better() == {"acc": True, "acc_strict": True, "no_answer": False}
            docs = list(task.test_docs())
            assert len(docs) == expected_count, task_name
            for doc in docs:
                options = prompt.options_dict(doc["options"])
                text = task.doc_to_text(doc)
                assert text == (
                    doc["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items()) + instruction
                )
                assert task.doc_to_target(doc) == doc["answer_idx"] in options
    assert len(list(built["m1_hle"].test_docs())) == 103  # every record, as m1 scores the file


@needs_partial
def test_groups_build_with_their_members(merged_data, monkeypatch):
    """Each group on its own: lm-eval refuses overlapping groups in one run (m1_table1 and m1_hard share five)."""
    monkeypatch.setenv("M1_EVAL_DATA", str(merged_data))
    manager = task_manager()
    for group, members in GROUPS.items():
        loaded = manager.load([group])
        assert list(loaded["groups"]) == [group]
        assert loaded["group_map"][group] == members
        assert sorted(loaded["tasks"]) == sorted(members)
        aggregates = loaded["groups"][group].aggregate_metric_list
        assert [m.metric for m in aggregates] == ["acc", "acc_strict", "no_answer"]
        assert all(m.weight_by_size is False and m.aggregation == "mean" for m in aggregates)
    with pytest.raises(ValueError, match="m1_table1.*m1_hard"):
        manager.load(["m1_table1", "m1_hard"])  # run these two in separate lm_eval runs
    assert sorted(manager.load(["m1_table1", "m1_hle"])["tasks"]) == sorted([*GROUPS["m1_table1"], "m1_hle"])


@needs_partial
def test_metadata_prompt_cot_reaches_the_plain_tasks(merged_data, monkeypatch):
    """``lm_eval --metadata '{"prompt": "cot"}'`` becomes TaskManager metadata, passed to custom_dataset."""
    monkeypatch.setenv("M1_EVAL_DATA", str(merged_data))
    built = build(["m1_pubmedqa", "m1_medqa_cot"], task_manager(metadata={"prompt": "cot", "pretrained": "x/y"}))
    for name in ("m1_pubmedqa", "m1_medqa_cot"):
        task = built[name]
        doc = next(iter(task.test_docs()))
        assert task.doc_to_text(doc).endswith(COT_INSTRUCTION)
    assert built["m1_pubmedqa"].config.metadata["prompt"] == "cot"  # recorded in the results' task config


@pytest.mark.parametrize(("task", "file"), [("m1_demo", data.DEMO_FILE),
                                            ("m1_demo_chain", data.DEMO_DIR / "m1_demo_chain.json")])
def test_demo_task_needs_no_data_file(monkeypatch, tmp_path, task, file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("M1_EVAL_DATA", str(tmp_path / "ignored-by-the-demo-tasks.json"))
    built = build([task, f"{task}_cot"])
    records = json.loads(file.read_text())[task]
    for name, instruction in ((task, PLAIN_INSTRUCTION), (f"{task}_cot", COT_INSTRUCTION)):
        docs = list(built[name].test_docs())
        assert len(docs) == len(records)
        for doc, rec in zip(docs, records, strict=True):
            assert built[name].doc_to_text(doc) == (
                rec["question"] + "\n" + "\n".join(f"{k}. {v}" for k, v in rec["options"].items()) + instruction
            )


def test_env_prompt_variant_reaches_the_demo_task(monkeypatch):
    monkeypatch.setenv("M1_PROMPT", "cot")
    task = build(["m1_demo"])["m1_demo"]
    assert task.doc_to_text(next(iter(task.test_docs()))).endswith(COT_INSTRUCTION)


def test_a_missing_source_fails_the_task_with_the_data_error(tmp_path, monkeypatch):
    path = tmp_path / "only_lancet_nejm.json"
    path.write_bytes((FIXTURES / "lancet_nejm.json").read_bytes())
    monkeypatch.setenv("M1_EVAL_DATA", str(path))
    assert len(list(build(["m1_nejm"])["m1_nejm"].test_docs())) == 3
    with pytest.raises(data.M1DataError, match=r"source 'MedQA_USLME_test' is not in .*only_lancet_nejm\.json"):
        build(["m1_medqa"])


# ------------------------------------------------------------------------------------------------ registry


def test_yamls_are_what_the_registry_generates():
    """task_yamls/ holds exactly the files `python -m m1_tasks.generate_yamls` writes from m1_tasks.benchmarks."""
    from m1_tasks.generate_yamls import differences

    assert differences(task_dir()) == []


def test_base_config_matches_what_the_generated_groups_aggregate():
    from lm_eval.tasks._yaml_loader import load_yaml as lm_eval_load_yaml

    from m1_reports.suite import scores_with_marker
    from m1_tasks.generate_yamls import AGGREGATED_METRICS, BASE_CONFIG
    from m1_tasks.scoring import SCORER_VERSION

    base = lm_eval_load_yaml(task_dir() / BASE_CONFIG, resolve_func=False)
    assert tuple(m["metric"] for m in base["metric_list"]) == AGGREGATED_METRICS
    assert float(base["metadata"]["version"]) == float(SCORER_VERSION)  # the one home of the version
    assert scores_with_marker(float(SCORER_VERSION))  # the report reads today's runs as scored with the marker


def test_registry_is_consistent_and_feeds_the_data_loader_and_the_report():
    from m1_reports import columns, suite
    from m1_tasks import benchmarks

    assert [b.task for b in benchmarks.TABLE1] == list(GROUPS["m1_table1"])
    assert all(group in GROUPS for b in benchmarks.BENCHMARKS for group in b.groups)
    assert len({b.task for b in benchmarks.BENCHMARKS}) == len({b.source for b in benchmarks.BENCHMARKS}) == len(
        benchmarks.BENCHMARKS
    )
    assert [(c.task, c.column, c.label, c.size) for c in columns.TABLE1_COLUMN_INFO] == [
        (b.task, b.column, b.label, b.paper_count) for b in benchmarks.TABLE1
    ]
    assert columns.by_column("HLE").size == EXPECTED_COUNTS["HumanityLastExam"] == 103
    assert columns.benchmark("m1_medbullets_op4_cot").label == "MedBullets op4 (CoT)"
    for bench in benchmarks.BENCHMARKS:
        for variant in benchmarks.VARIANTS:
            task = bench.task_for(variant)
            assert benchmarks.split_variant(task) == (bench.task, variant)
            assert suite.source_of(task) == bench.source and suite.paper_count(task) == bench.paper_count
    assert benchmarks.split_variant("m1_table1_cot") == ("m1_table1", "cot")
    assert benchmarks.split_variant("my_task_cot") == ("my_task_cot", "plain")
    assert set(benchmarks.all_task_names()) == set(task_manager().all_tasks)
