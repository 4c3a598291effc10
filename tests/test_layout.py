"""The halves meet only at the model artifact (artifact/, which imports neither and nothing but
the standard library); the service never imports torch; no import cycles."""

import ast
import sys
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
    [("service", {"torch", "training"}), ("training", {"service"}),
     ("artifact", {"service", "training"})],
)
def test_package_does_not_import_the_other_side(package: str, forbidden: set[str]) -> None:
    offenders = {
        path: sorted(names & forbidden)
        for path, names in imported_top_level_modules(package).items()
        if names & forbidden
    }
    assert offenders == {}, f"{package}/ must not import {sorted(forbidden)}: {offenders}"


def test_artifact_needs_only_the_standard_library() -> None:
    """Both images (the service's has no torch, the training one no FastAPI) can import it."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "artifact"}
    outside = {path: sorted(names - allowed)
               for path, names in imported_top_level_modules("artifact").items()
               if names - allowed}
    assert outside == {}
    assert imported_top_level_modules("artifact")["artifact/card.py"] >= {"hashlib", "json"}


def test_scanner_sees_imports(tmp_path: Path) -> None:
    """Guard against a scanner that finds nothing and so passes vacuously."""
    modules = imported_top_level_modules("tests")
    assert {"ast", "pytest", "pathlib"} <= modules["tests/test_layout.py"]


def module_name(path: Path) -> str:
    """`service/models/registry.py` -> `service.models.registry` (a package: its folder)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(package: str) -> dict[str, set[str]]:
    """Map each module of `package` to the modules of `package` it imports anywhere in its
    body (an import inside a function counts: it is the same dependency, only later)."""
    modules = {module_name(path): path for path in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in modules and t != name
                       and not name.startswith(t + ".")}  # a module's own package: no edge
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


@pytest.mark.parametrize("package", ["service", "training"])
def test_no_import_cycles(package: str) -> None:
    assert find_cycle(internal_imports(package)) == []


def test_cycle_finder_finds_a_cycle() -> None:
    """Guard against a checker that can never fail."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


# service/ in levels: shared leaf modules (and images/, which uses only errors), then the model
# side, the wire side (HTTP, gRPC), the process side.
SERVICE_LEVELS = {"service": 0, "service.images": 0, "service.models": 1, "service.http": 2,
                  "service.grpc": 2, "service.run": 3}


def service_level(module: str) -> int:
    """The level of a service module: its folder's, or 0 for the shared modules at the top."""
    folder = module.rsplit(".", 1)[0] if module.count(".") > 1 else "service"
    return SERVICE_LEVELS[module if module in SERVICE_LEVELS else folder]


def test_service_imports_only_its_own_level_or_below() -> None:
    upward = sorted(f"{source} -> {target}"
                    for source, targets in internal_imports("service").items()
                    for target in targets if service_level(target) > service_level(source))
    assert upward == []
    assert service_level("service.http.fastpath") == 2  # the levels are read as meant
    assert service_level("service.codec") == 0
