"""A good guest: lm-eval's own task-manager, registry and CLI tests fare exactly as they do without the plugin.

lm-eval ships its unit tests in its source distribution (not in the wheel).  This test fetches that sdist once
with pip (cached under ``$M1_EVAL_CACHE`` or ``~/.cache/m1-eval``), runs the selected test files against the
installed lm-eval twice, with the start-up hook active and with ``M1_EVAL_DISABLE_HOOK=1`` (which is the same as
the plugin not being installed: the hook is all it adds to an lm-eval process), and requires the same outcome
for every test.  Some of them fail either way (the sdist lacks their ``tests/test_configs`` folder); what
matters is that the plugin changes none.  Skipped, with the reason, when the sdist cannot be fetched.

Some of them load datasets from the Hugging Face Hub.  Where the Hub cannot be reached, both runs get
``HF_HUB_OFFLINE=1`` (and ``HF_DATASETS_OFFLINE=1``): those tests then fail at once, in both runs, instead of after
minutes of huggingface_hub's retries; failed either way, the outcomes compared are the same.

The outcomes without the plugin are kept beside the sdist, under a digest of everything they depend on (lm-eval's
tests, every installed package but m1-eval, Python, the Hub's reachability): on an unchanged environment only the
run with the plugin is repeated.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TEST_FILES = ("tests/test_task_manager.py", "tests/test_registry.py", "tests/test_cli_subcommands.py")
#: fails without the plugin's care: TaskManager(include_defaults=False, include_path=X) promises only X's tasks
INCLUDE_DEFAULTS_TEST = (
    "tests.test_task_manager.TestTaskManagerIntegration::test_include_defaults_false_with_custom_path"
)


def lm_eval_tests() -> Path:
    """The ``tests/`` folder of the installed lm-eval's source distribution (fetched once, then cached)."""
    from m1_eval.tiny_model import default_cache_dir

    version = importlib.metadata.version("lm_eval")
    target = default_cache_dir() / "lm-eval-sdist" / f"lm_eval-{version}"
    if all((target / name).is_file() for name in TEST_FILES):
        return target
    with tempfile.TemporaryDirectory() as download:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"lm-eval=={version}", "--no-binary", ":all:", "--no-deps",
             "--quiet", "-d", download],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        archives = sorted(Path(download).glob("lm_eval-*.tar.gz"))
        if result.returncode != 0 or not archives:
            reason = (result.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            pytest.skip(f"lm-eval {version} source distribution not available from the package index: {reason}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            with tarfile.open(archives[0]) as archive:
                members = [m for m in archive.getmembers() if m.name.split("/")[1:2] == ["tests"]]
                archive.extractall(staging, members=members, filter="data")
            shutil.rmtree(target, ignore_errors=True)
            (staging / f"lm_eval-{version}").rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers (through the environment's proxy, if any) within a few seconds."""
    import httpx

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        httpx.head(endpoint, timeout=5, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return True


def start_run(source: Path, workdir: Path, hook: bool, offline: bool) -> tuple[subprocess.Popen, Path]:
    """Start lm-eval's selected tests on a private copy (outside any lm-eval source tree, so the installed
    package is what they import); returns the process and its junit report path."""
    shutil.copytree(source / "tests", workdir / "tests")
    report = workdir / "junit.xml"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if offline:  # the Hub's datasets fail at once rather than after huggingface_hub's retries, in both runs
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("M1_EVAL_DISABLE_HOOK", None)
    if not hook:
        env["M1_EVAL_DISABLE_HOOK"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(workdir),
         f"--junitxml={report}", *TEST_FILES],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return process, report


KINDS = {"failure": "failed", "error": "error", "skipped": "skipped"}  # junit element -> pytest outcome


def outcomes(report: Path) -> dict[str, str]:
    """Test id -> passed / failed / error / skipped, from pytest's junit report."""
    result = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        kinds = [KINDS[child.tag] for child in case if child.tag in KINDS]
        result[f"{case.get('classname')}::{case.get('name')}"] = kinds[0] if kinds else "passed"
    return result


def without_plugin_cache(source: Path, offline: bool) -> Path:
    """Where the outcomes without the plugin are kept: they depend on lm-eval's tests, the installed packages (all
    but m1-eval), Python and whether the Hub answers, never on m1-eval's code, so the file's name is a digest of
    exactly those and a later run on the same environment compares with it instead of running them again."""
    from m1_eval.tiny_model import default_cache_dir

    digest = hashlib.sha256(f"{sys.version}\noffline={offline}\n".encode())
    for dist in sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().replace("_", "-") != "m1-eval"
    ):
        digest.update(dist.encode() + b"\n")
    for path in sorted(p for p in (source / "tests").rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return default_cache_dir() / "lm-eval-sdist" / f"outcomes-without-plugin-{digest.hexdigest()[:20]}.json"


def test_lm_evals_own_task_manager_registry_and_cli_tests_fare_the_same_with_the_plugin(tmp_path):
    source = lm_eval_tests()
    offline = not hub_reachable()
    kept = without_plugin_cache(source, offline)
    hooks = (True,) if kept.is_file() else (True, False)
    runs = {hook: start_run(source, tmp_path / ("with" if hook else "without"), hook, offline) for hook in hooks}
    logs = {hook: process.communicate(timeout=1500)[0] for hook, (process, _) in runs.items()}  # both in parallel
    results = {}
    for hook, (_, report) in runs.items():
        assert report.is_file(), logs[hook][-3000:]
        results[hook] = outcomes(report)
    with_plugin = results[True]
    if False in results:
        without = results[False]
        assert len(without) > 100, logs[False][-3000:]  # the three files hold about 200 tests
        staging = kept.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(without, indent=0, sort_keys=True))
        staging.replace(kept)
    else:
        without = json.loads(kept.read_text())
    changed = {name: (without.get(name), with_plugin.get(name)) for name in without.keys() | with_plugin.keys()
               if without.get(name) != with_plugin.get(name)}  # fmt: skip
    assert changed == {}, f"(without the plugin, with it; {kept} if that run was not this one's): {changed}"
    assert with_plugin[INCLUDE_DEFAULTS_TEST] == "passed"
