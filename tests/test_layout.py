"""The halves meet only at the model artifact; the service never imports torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_top_level_modules(package: str) -> dict[str, set[str]]:
    """Map each .py file of `package` to the top-level module names it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("service", {"torch", "training"}), ("training", {"service"})],
)
def test_package_does_not_import_the_other_side(package: str, forbidden: set[str]) -> None:
    offenders = {
        path: sorted(names & forbidden)
        for path, names in imported_top_level_modules(package).items()
        if names & forbidden
    }
    assert offenders == {}, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


def test_scanner_sees_imports(tmp_path: Path) -> None:
    """Guard against a scanner that finds nothing and so passes vacuously."""
    modules = imported_top_level_modules("tests")
    assert {"ast", "pytest", "pathlib"} <= modules["tests/test_layout.py"]
