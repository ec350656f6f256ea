"""The tests' own layout: no test module imports another test module or a conftest.py (what
tests share is in tests/harness/), and tests/unit is laid out as include/pipeline/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PACKAGE = ROOT / "include" / "pipeline"


def is_test_module(name: str) -> bool:
    """Whether a dotted module name is a test module or a conftest.py (``tests.unit.test_x``, or
    ``test_x`` as pytest's rootdir-relative import would let a test import it)."""
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(source: str) -> list[str]:
    """The test modules (and conftest.py files) that ``source`` imports, wherever the import is."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if is_test_module(module):
                found.append(module)
            elif node.level or module.split(".")[0] == "tests":  # from tests.integration import test_x
                found += [f"{module}.{alias.name}" for alias in node.names if is_test_module(alias.name)]
    return found


def test_no_test_module_imports_another():
    imports = {
        str(path.relative_to(ROOT)): names
        for path in sorted(TESTS.rglob("*.py"))
        if (names := imported_test_modules(path.read_text()))
    }
    assert imports == {}, "move what these import into tests/harness/"


def test_the_check_sees_an_import_of_a_test_module():
    planted = (
        "import json\nfrom tests.integration.test_scheduler import check_metrics\n"
        "from tests.integration import test_operations, expected\nimport tests.unit.test_orders\n"
        "from tests.dags.conftest import DAGS\nfrom test_batch_path import W\n"
        "def f():\n    from .test_steps import raw\n"
    )
    assert imported_test_modules(planted) == [
        "tests.integration.test_scheduler", "tests.integration.test_operations", "tests.unit.test_orders",
        "tests.dags.conftest", "test_batch_path", ".test_steps",
    ]
    shared = "from tests.harness.pipeline import Pipeline\nfrom tests import oracle\n"
    assert imported_test_modules(shared) == []


def test_unit_tests_are_laid_out_as_the_package():
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    folders = {path.name for path in (TESTS / "unit").iterdir() if path.is_dir()} - {"__pycache__"}
    assert folders <= packages, f"not packages of include/pipeline: {folders - packages}"
