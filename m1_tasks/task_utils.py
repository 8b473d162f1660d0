"""The functions the task YAMLs in ``task_yamls/`` call through ``!function m1_tasks.task_utils.<name>``.

lm-eval 0.4.13 resolves ``!function a.b.fn`` by first looking for ``a/b.py`` beside the YAML and otherwise
importing the module ``a.b``: the YAMLs use the installed package's module path, so there is no ``utils.py``
beside them and no second copy of this module (or of the data cache).
"""

from __future__ import annotations

import logging
from typing import Any

from m1_tasks.data import DROP_MISMATCHED_KEY, build_dataset
from m1_tasks.prompt import PROMPT_METADATA_KEY, options_dict, render_prompt, resolve_variant

logger = logging.getLogger("lm_eval.m1_tasks.task_utils")


def load_dataset(**kwargs: Any):
    """``custom_dataset`` of every m1 task.

    lm-eval calls it with the task's ``metadata`` (the YAML's, plus ``--metadata`` and all ``--model_args``)
    and its ``dataset_kwargs``.  Ours are ``m1_source`` (the source key), optionally ``m1_data`` (``demo`` for
    the packaged demo file) and ``m1_prompt`` (a variant fixed by the task, e.g. the ``*_cot`` tasks); the
    metadata key ``prompt`` selects the variant of the other tasks, ``drop_mismatched`` drops a local file's
    records whose answer text differs from its option; everything else is ignored.
    """
    source = kwargs.get("m1_source")
    if not source:
        raise TypeError("m1 task config error: dataset_kwargs.m1_source (the source key in the data file) is missing")
    variant, origin = resolve_variant(kwargs.get("m1_prompt"), kwargs.get(PROMPT_METADATA_KEY))
    if origin in ("metadata", "env"):
        logger.info("m1 tasks: %s uses the %r prompt (from %s)", source, variant,
                    "--metadata" if origin == "metadata" else "M1_PROMPT")
    elif origin == "task" and kwargs.get(PROMPT_METADATA_KEY) not in (None, ""):
        logger.info("m1 tasks: %s keeps its own %r prompt; metadata prompt=%r does not apply to it",
                    source, variant, kwargs.get(PROMPT_METADATA_KEY))
    drop = str(kwargs.get(DROP_MISMATCHED_KEY, "")).strip().lower() in ("1", "true", "yes")
    return build_dataset(source, variant=variant, data=kwargs.get("m1_data"), drop_mismatched=drop)


def doc_to_text(doc: dict[str, Any]) -> str:
    return render_prompt(doc["question"], doc["options"], doc.get("prompt_variant") or "plain")


def scoring_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The doc as the scorer expects it: ``options`` as ``{letter: text}``."""
    return {**doc, "options": options_dict(doc["options"])}


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    from m1_tasks.scoring import score_response

    text = results[0] if results else ""
    scored = score_response(text, scoring_doc(doc))
    return {
        "acc": float(scored["correct"]),
        "acc_strict": float(scored["correct_strict"]),
        "no_answer": float(scored["no_answer"]),
    }


def process_results_repeats(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """``process_results`` of the K-sample variants (``repeats: K``, the keep-all filter): ``results`` is
    ``[[r_1, ..., r_K]]``; returns ``acc``, ``acc_strict``, ``no_answer`` (means over the K samples) and
    ``maj@k``, ``pass@k``, ``avg@k`` for k = 1..K (:mod:`m1_tasks.repeats`).  A bare ``[text]`` (a variant run
    with lm-eval's default ``take_first`` filter) is one sample."""
    from m1_tasks.repeats import sample_metrics

    responses = results[0] if results and isinstance(results[0], (list, tuple)) else list(results)
    return sample_metrics(responses, scoring_doc(doc))
