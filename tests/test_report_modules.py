"""m1_reports is split by job (m1_reports/README.md): its modules import each other without a circle (every import
counts, also one under ``TYPE_CHECKING`` or inside a function), and CSV text is made in one module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "m1_reports"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "m1_reports":
            found |= {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists()}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("m1_reports."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("m1_reports.")}
    return found - {path.stem}


def test_the_modules_import_each_other_without_a_circle():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import circle: " + " -> ".join((*path, module))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_csv_text_is_made_in_one_module():
    makers = sorted(path.name for path in PACKAGE.glob("*.py") if ".to_csv(" in path.read_text(encoding="utf-8"))
    assert makers == ["render_csv.py"]
