"""The packages form layers that only import downwards: ``m1_base`` < ``m1_tasks`` < ``m1_models`` <
``m1_reports`` < ``m1_eval`` (see ``m1_base/__init__.py``).  Every import statement counts, also one inside a
function; ``m1_base`` imports the standard library only."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["m1_base", "m1_tasks", "m1_models", "m1_reports", "m1_eval"]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_layers_below_it(package):
    rank = LAYERS.index(package)
    upward = []
    for path in modules_of(package):
        for line, name in imported_modules(path):
            top = name.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > rank:
                upward.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert not upward, "\n".join(upward)


def test_the_bottom_layer_imports_the_standard_library_only():
    outside = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in modules_of("m1_base")
        for line, name in imported_modules(path)
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "m1_base"
    ]
    assert not outside, "\n".join(outside)


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds an import inside a function, where the upward ones used to hide."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from m1_eval.errors import M1UserError\n")
    assert imported_modules(module) == [(2, "m1_eval.errors")]


def test_every_public_name_of_m1_models_resolves_to_its_one_home():
    import importlib

    import m1_models

    for name in m1_models.__all__:
        home = importlib.import_module(m1_models._EXPORTS[name])
        value = getattr(m1_models, name)
        assert value is getattr(home, name), name
        if isinstance(value, type) or callable(value):
            assert value.__module__ == home.__name__, (name, value.__module__)  # defined there, not re-exported


def test_the_models_lm_eval_registers_are_the_packages_entry_points():
    """The start-up hook registers ``MODELS`` (lm-eval 0.4.13 reads no entry points); ``pyproject.toml`` lists
    the same models as ``lm_eval.models`` entry points for the lm-eval release that will read them."""
    import tomllib

    from m1_eval.lm_eval_hook import MODELS

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["lm_eval.models"] == MODELS


def test_the_tiny_models_chat_markers_are_the_markers_module():
    from m1_base import markers
    from m1_eval import tiny_model

    assert markers.IM_START in tiny_model.SPECIAL_TOKENS and markers.IM_END in tiny_model.SPECIAL_TOKENS
    assert markers.IM_START in tiny_model.CHAT_TEMPLATE and markers.IM_END in tiny_model.CHAT_TEMPLATE


def test_the_record_fields_the_report_reads_are_record_fields():
    from m1_models.budget_forcing import GenerationRecord
    from m1_models.records import RECORD_SCHEMA
    from m1_reports.read_streams import RECORD_COLUMNS

    assert set(RECORD_COLUMNS) <= set(RECORD_SCHEMA)
    assert {f.name for f in dataclasses.fields(GenerationRecord)} <= set(RECORD_SCHEMA)  # records are built from it


def test_no_two_public_names_mean_two_things():
    """A name defined at module level in two packages must be the same object (a re-export), never a second
    meaning (``parse_gen_kwargs``, ``RECORD_FIELDS``, ``Benchmark`` and ``PAPER`` each once meant two things)."""
    import importlib

    homes: dict[str, list[tuple[str, object]]] = {}
    for package in LAYERS:
        for path in modules_of(package):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if name.endswith("__main__"):
                continue
            module = importlib.import_module(name)
            for attr, value in vars(module).items():
                if attr.startswith("_") or attr.upper() == attr and len(attr) < 4:
                    continue
                if getattr(value, "__module__", name) == name or attr.isupper():
                    homes.setdefault(attr, []).append((name, value))
    per_module = {"EPILOG", "SAMPLING_KEYS", "SOURCE"}  # each module's own (its --help, its backend's keys)

    def same(a: object, b: object) -> bool:  # the same object, or a copy tied to it (equal)
        return a is b or (not isinstance(a, type) and not callable(a) and a == b)

    clashes = {
        attr: sorted({module for module, _ in found})
        for attr, found in homes.items()
        if attr not in per_module
        and (attr.isupper() or isinstance(found[0][1], type) or callable(found[0][1]) and attr.startswith("parse_"))
        and not all(same(found[0][1], value) for _, value in found)
    }
    assert not clashes, clashes
