"""K samples per question (m1_tasks/repeats.py): maj@k, pass@k and avg@k for every k <= K in lm-eval's results.

The metrics against hand-computed values and brute force over subsets; then lm-eval end to end, through
``lm_eval.simple_evaluate`` with a scripted model (answers from a table keyed by prompt and repeat index; no
engine): the committed ``m1_demo_k8`` YAML, a K chosen at run time (``register_repeats``, as ``m1-sweep
--repeats K`` will), groups, K = 1 against the plain task, and what lm-eval's ``--use_cache`` does with repeats.
"""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction
from itertools import combinations, product
from pathlib import Path

import pytest

from m1_base.errors import M1UserError
from m1_tasks import repeats
from m1_tasks.benchmarks import BENCHMARKS, GROUP_LIST, PROMPT_VARIANTS, YAML_REPEATS, repeats_name
from m1_tasks.data import DEMO_FILE
from m1_tasks.paths import task_dir
from m1_tasks.scoring import score
from m1_tasks.task_utils import scoring_doc

pytestmark = pytest.mark.usefixtures("clean_m1_env")

DEMO_RECORDS = json.loads(Path(DEMO_FILE).read_text())["m1_demo"]


# --------------------------------------------------------------------------------------------------- pass@k


def test_pass_at_k_hand_computed():
    # n = 5 samples, c = 2 correct: pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert repeats.pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    assert repeats.pass_at_k(5, 2, 1) == pytest.approx(0.4, abs=1e-15)  # pass@1 = c/n
    assert repeats.pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10, abs=1e-15)  # C(3,3)/C(5,3) = 1/10
    assert repeats.pass_at_k(5, 2, 4) == 1.0  # only 3 wrong: every 4 samples hold a correct one
    assert repeats.pass_at_k(8, 0, 8) == 0.0
    assert repeats.pass_at_k(8, 8, 1) == 1.0
    for bad in ((5, 6, 1), (5, 2, 0), (5, 2, 6), (0, 0, 1)):
        with pytest.raises(ValueError):
            repeats.pass_at_k(*bad)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample(n):
    """Brute force: every correctness pattern of n samples, every k, every k-subset."""
    for pattern in product((False, True), repeat=n):
        c = sum(pattern)
        for k in range(1, n + 1):
            subsets = list(combinations(pattern, k))
            expected = Fraction(sum(any(s) for s in subsets), len(subsets))
            assert repeats.pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12), (pattern, k)


# --------------------------------------------------------------------------------------------------- maj@k


def test_majority_vote_tie_goes_to_the_letter_voted_first():
    assert repeats.majority_vote(["B", "A", "A", "B"]) == "B"  # 2-2: B was voted first
    assert repeats.majority_vote(["B", "A", "A"]) == "A"  # 1-2
    assert repeats.majority_vote(["C", "A", "B"]) == "C"  # 1-1-1
    assert repeats.majority_vote(["A", "C", "B", "B", "C"]) == "C"  # B and C tied at 2; C's first vote comes first
    assert repeats.majority_vote(["", "D", ""]) == "D"  # no letter: no vote
    assert repeats.majority_vote(["", ""]) == "" and repeats.majority_vote([]) == ""


def _doc(answer: str = "B") -> dict:
    return {"question": "q", "options": {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"},
            "answer": {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}[answer], "answer_idx": answer}


def test_every_scored_sample_votes_with_the_letter_acc_judged():
    doc = _doc("B")
    cases = {
        "\\boxed{B}": "B",  # equality rule (letter)
        "\\boxed{beta}": "B",  # equality rule (answer text)
        "\\boxed{C}": "C",
        "The answer is D": "D",  # answer_is
        "I think gamma fits": "C",  # option text
        "": "D",  # nothing extractable: the similarity fallback's letter (the last option), as acc credits it
    }
    for text, letter in cases.items():
        result = score(text, doc)
        assert repeats.vote_letter(result, "B") == letter, text
        assert (letter == "B") == result.correct, text  # a vote for the answer <=> acc counts the sample
    no_options = {"question": "q", "options": {}, "answer": "x", "answer_idx": "A"}
    assert repeats.vote_letter(score("whatever", no_options), "A") == ""  # rule none: abstains


def test_sample_metrics_hand_computed():
    doc = _doc("B")
    responses = ["\\boxed{A}", "\\boxed{B}", "\\boxed{B}", "\\boxed{A}", "no idea", "\\boxed{beta}"]
    # letters A B B A D(fallback, wrong) B; correct 0 1 1 0 0 1
    m = repeats.sample_metrics(responses, doc)
    assert list(m) == repeats.metric_names(6)
    assert m["acc"] == 3 / 6 and m["acc_strict"] == 3 / 6 and m["no_answer"] == 1 / 6
    assert [m[f"avg@{k}"] for k in range(1, 7)] == [0, 1 / 2, 2 / 3, 2 / 4, 2 / 5, 3 / 6]
    # maj: A | A,B tie -> A | B 2-1 | 2-2 tie -> A | A2 B2 D1 -> A | B 3-2
    assert [m[f"maj@{k}"] for k in range(1, 7)] == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert [m[f"pass@{k}"] for k in range(1, 7)] == pytest.approx(
        [1 - Fraction(3, 6), 1 - Fraction(3, 15), 1 - Fraction(1, 20), 1, 1, 1])
    assert m["pass@1"] == m["acc"] == m["avg@6"]


def test_sample_metrics_of_one_sample_are_the_plain_tasks_metrics():
    from m1_tasks.task_utils import process_results, process_results_repeats

    for record in DEMO_RECORDS[:5]:
        for text in ("\\boxed{A}", "\\boxed{B}", "", "The answer is C", "<|im_start|>answer\nFinal Answer: D"):
            plain = process_results(record, [text])
            for results in ([[text]], [text]):  # the keep-all filter's shape, and take_first's
                m = process_results_repeats(record, results)
                assert {key: m[key] for key in plain} == plain
                assert m["maj@1"] == m["pass@1"] == m["avg@1"] == plain["acc"]


# ------------------------------------------------------------------------------------- scripted lm-eval runs


K = YAML_REPEATS[0]


def _answers(doc: dict, n: int) -> list[str]:
    """n responses for a demo question, varied by question: right, wrong letters, an unextractable text."""
    gold = doc["answer_idx"]
    letters = [letter for letter in doc["options"]]
    wrong = [letter for letter in letters if letter != gold]
    i = DEMO_RECORDS.index(doc)
    pool = [f"\\boxed{{{gold}}}", f"\\boxed{{{wrong[i % len(wrong)]}}}", f"\\boxed{{{wrong[(i + 1) % len(wrong)]}}}",
            "I cannot tell.", f"The answer is {gold}"]
    return [pool[(i * 3 + r * (1 + i % 4)) % len(pool)] for r in range(n)]


def _table(records: list[dict], n: int) -> dict[str, list[str]]:
    from m1_tasks.prompt import render_prompt

    return {render_prompt(r["question"], r["options"], "plain"): _answers(r, n) for r in records}


def scripted_lm(table: dict[str, list[str]]):
    """An lm-eval LM answering from ``table[prompt][repeat index]``.  lm-eval sends a ``repeats: K`` request as
    K identical requests in a row (the same Instance); the repeat index is how many identical ones this call has
    seen before, or, behind ``--use_cache``, the number the start-up hook gave it (as the m1 models read it)."""
    from lm_eval.api.model import LM

    from m1_models.records import REPEAT_KEY

    class Scripted(LM):
        def __init__(self):
            super().__init__()
            self.calls: list[int] = []

        def generate_until(self, requests, disable_tqdm: bool = False):
            seen: Counter = Counter()
            out = []
            for request in requests:
                prompt, gen_kwargs = request.args
                if REPEAT_KEY in gen_kwargs:
                    index = gen_kwargs[REPEAT_KEY]
                else:
                    key = json.dumps([prompt, gen_kwargs], sort_keys=True)
                    index = seen[key]
                    seen[key] += 1
                out.append(table[prompt][index])
            self.calls.append(len(requests))
            return out

        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

    return Scripted()


def manager(*paths):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False, include_path=[str(task_dir()), *map(str, paths)])


def evaluate(lm, tasks, task_manager=None, **kwargs):
    from lm_eval import simple_evaluate

    return simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager or manager(), log_samples=True,
                           bootstrap_iters=1000, **kwargs)


def _expected(records: list[dict], table: dict, n: int) -> dict[str, float]:
    """The means over questions, computed here from the scorer's verdicts with brute-force maj/pass/avg."""
    from m1_tasks.prompt import render_prompt

    per_doc = []
    for record in records:
        texts = table[render_prompt(record["question"], record["options"], "plain")][:n]
        doc = scoring_doc(record)
        results = [score(t, doc) for t in texts]
        gold = record["answer_idx"]
        letters = [gold if r.rule in ("boxed", "exact") else r.extracted for r in results]
        right = [r.correct for r in results]
        row = {"acc": sum(right) / n}
        for k in range(1, n + 1):
            counts = Counter(x for x in letters[:k] if x)
            top = max(counts.values()) if counts else 0
            firsts = [x for x in letters[:k] if x and counts[x] == top]
            row[f"maj@{k}"] = float(bool(firsts) and firsts[0] == gold)
            subsets = list(combinations(right, k))
            row[f"pass@{k}"] = sum(any(s) for s in subsets) / len(subsets)
            row[f"avg@{k}"] = sum(right[:k]) / k
        per_doc.append(row)
    return {key: sum(row[key] for row in per_doc) / len(per_doc) for key in per_doc[0]}


@pytest.fixture(scope="module")
def k8_run():
    table = _table(DEMO_RECORDS, K)
    lm = scripted_lm(table)
    return evaluate(lm, ["m1_demo_k8"]), table, lm


def test_the_k8_demo_task_writes_every_k_with_its_stderr(k8_run):
    out, table, lm = k8_run
    result = out["results"]["m1_demo_k8"]
    assert lm.calls == [len(DEMO_RECORDS) * K]  # lm-eval sent each request K times
    expected = _expected(DEMO_RECORDS, table, K)
    for family in repeats.REPEAT_FAMILIES:
        for k in range(1, K + 1):
            name = f"{family}@{k}"
            assert result[f"{name},none"] == pytest.approx(expected[name], abs=1e-12), name
            stderr = result[f"{name}_stderr,none"]
            assert isinstance(stderr, float) and stderr >= 0, name
    for name in ("acc", "acc_strict", "no_answer"):
        assert isinstance(result[f"{name}_stderr,none"], float)
    assert result["acc,none"] == pytest.approx(expected["acc"], abs=1e-12)
    assert result["acc,none"] == pytest.approx(result[f"avg@{K},none"]) == pytest.approx(result["pass@1,none"])
    # the numbers are not degenerate: majority voting, pass@k and the first-k average differ here
    assert len({round(result[f"maj@{k},none"], 9) for k in range(1, K + 1)}) > 1
    assert result[f"pass@{K},none"] > result[f"maj@{K},none"]
    assert out["configs"]["m1_demo_k8"]["repeats"] == K
    assert out["higher_is_better"]["m1_demo_k8"][f"maj@{K}"] is True


def test_the_samples_file_keeps_all_k_responses(k8_run):
    out, table, _ = k8_run
    rows = out["samples"]["m1_demo_k8"]
    assert len(rows) == len(DEMO_RECORDS)
    row = rows[0]
    assert row["filter"] == "none"
    assert row["filtered_resps"] == [table[row["arguments"][0][0]]]  # all K, in repeat order
    assert row["resps"] == [table[row["arguments"][0][0]]]
    assert set(repeats.metric_names(K)) <= set(row)


def test_a_k_chosen_at_run_time_and_k1_equals_the_plain_task():
    """Separate runs, as a user compares them: in one run, identical requests of two tasks (``m1_demo`` and
    ``m1_demo_k1``) are numbered together as repeats of one request (the m1 models' rule, mimicked here)."""
    tm = manager()
    names = repeats.register_repeats(tm, ["m1_demo"], 3) + repeats.register_repeats(tm, ["m1_demo"], 1)
    assert names == ["m1_demo_k3", "m1_demo_k1"]
    table = _table(DEMO_RECORDS, 3)
    out = {name: evaluate(scripted_lm(table), [name], task_manager=tm) for name in ("m1_demo", *names)}
    k3, k1, plain = (out[name]["results"][name] for name in ("m1_demo_k3", "m1_demo_k1", "m1_demo"))
    expected = _expected(DEMO_RECORDS, table, 3)
    assert {key for key in k3 if "@" in key and "stderr" not in key} == {
        f"{name},none" for name in repeats.metric_names(3) if "@" in name}
    for name, value in expected.items():
        assert k3[f"{name},none"] == pytest.approx(value, abs=1e-12), name
    for name in ("acc", "acc_strict", "no_answer"):  # K = 1: the plain task's numbers, exactly
        assert k1[f"{name},none"] == plain[f"{name},none"]
        assert k1[f"{name}_stderr,none"] == plain[f"{name}_stderr,none"]
    assert k1["maj@1,none"] == k1["pass@1,none"] == k1["avg@1,none"] == plain["acc,none"]
    plain_kwargs = out["m1_demo"]["configs"]["m1_demo"]["generation_kwargs"]
    for variant in names:  # sampling is the run's (--gen_kwargs temperature=...), not the variant's
        assert out[variant]["configs"][variant]["generation_kwargs"] == plain_kwargs


def test_a_group_at_run_time_aggregates_every_k(tmp_path):
    (tmp_path / "demo_pair.yaml").write_text(
        "group: demo_pair\ntask:\n  - m1_demo\n  - m1_demo_cot\naggregate_metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    weight_by_size: false\n")
    tm = manager(tmp_path)
    assert repeats.register_repeats(tm, ["demo_pair"], 2) == ["demo_pair_k2"]
    from m1_tasks.prompt import render_prompt

    table = {**_table(DEMO_RECORDS, 2),
             **{render_prompt(r["question"], r["options"], "cot"): _answers(r, 2)[::-1] for r in DEMO_RECORDS}}
    out = evaluate(scripted_lm(table), ["demo_pair_k2"], task_manager=tm)
    assert out["group_subtasks"]["demo_pair_k2"] == ["m1_demo_k2", "m1_demo_cot_k2"]
    group = out["groups"]["demo_pair_k2"]
    members = [out["results"][name] for name in ("m1_demo_k2", "m1_demo_cot_k2")]
    for name in repeats.metric_names(2):
        assert group[f"{name},none"] == pytest.approx(sum(m[f"{name},none"] for m in members) / 2), name
        assert isinstance(group[f"{name}_stderr,none"], float), name


def test_a_resumed_run_gives_each_repeat_its_own_cached_answer(tmp_path):
    """lm-eval's ``--use_cache`` keys a response by the request's (prompt, gen_kwargs), which the K repeats share
    (alone, it would give every repeat of a resumed run one answer); the start-up hook numbers the repeats where
    it looks them up.  The variants keep ``do_sample: false``: lm-eval never reads a sampled request back."""
    tm = manager()
    [name] = repeats.register_repeats(tm, ["m1_demo"], 3)
    table = _table(DEMO_RECORDS, 3)
    cache = str(tmp_path / "cache")
    first_lm = scripted_lm(table)
    first = evaluate(first_lm, [name], task_manager=tm, limit=4, use_cache=cache)
    assert first_lm.calls == [4 * 3]
    assert all(len(set(row["resps"][0])) > 1 for row in first["samples"][name])  # the table varies by repeat
    again_lm = scripted_lm(table)
    again = evaluate(again_lm, [name], task_manager=tm, limit=4, use_cache=cache)
    assert again_lm.calls == []  # everything from the cache, each repeat its own answer
    assert [r["resps"] for r in again["samples"][name]] == [r["resps"] for r in first["samples"][name]]
    assert again["results"][name] == first["results"][name]


# ------------------------------------------------------------------------------------------------- configs


def test_the_committed_variants_are_with_repeats_of_their_tasks():
    """Every ``k8/*_k8.yaml`` task is ``with_repeats(<its one-sample task>, 8)``, and every ``*_k8`` group is
    what ``register_repeats`` builds from its one-sample group: one definition, two routes."""
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = manager()
    folder = task_dir()
    for k in YAML_REPEATS:
        for variant in PROMPT_VARIANTS:
            sub = f"{variant.name}/" if variant.task_suffix else ""
            for bench in BENCHMARKS:
                task = bench.task_for(variant.name)
                committed = load_yaml(folder / f"k{k}" / f"{repeats_name(task, k)}.yaml")
                assert committed == repeats.with_repeats(load_yaml(folder / f"{sub}{task}.yaml"), k), task
            for group in GROUP_LIST:
                name = group.name + variant.task_suffix
                committed = load_yaml(folder / f"k{k}" / f"{repeats_name(name, k)}.yaml")
                [made] = repeats.register_repeats(tm, [name], k)
                built = tm.task_index[made].cfg
                assert {key: built[key] for key in committed} == committed, name


def test_with_repeats_takes_a_loaded_tasks_config_and_refuses_what_it_cannot_turn():
    task = manager().load(["m1_demo"])["tasks"]["m1_demo"]
    cfg = repeats.with_repeats(task.config, 4)
    assert cfg["task"] == "m1_demo_k4" and cfg["repeats"] == 4 and task.config.repeats == 1  # a copy
    assert [m["metric"] for m in cfg["metric_list"]] == repeats.metric_names(4)
    assert cfg["filter_list"] == [{"name": "none", "filter": []}]
    with pytest.raises(M1UserError, match="already has 4 samples"):
        repeats.with_repeats(cfg, 2)
    with pytest.raises(M1UserError, match="not an m1 task"):
        repeats.with_repeats({"task": "gsm8k", "process_results": None}, 2)
    for bad in (0, -1, True, 2.0, "8"):
        with pytest.raises(M1UserError, match="whole number"):
            repeats.with_repeats(cfg | {"repeats": 1, "process_results": task.config.process_results}, bad)
    with pytest.raises(M1UserError, match="not a task or group"):
        repeats.register_repeats(manager(), ["m1_nope"], 2)
