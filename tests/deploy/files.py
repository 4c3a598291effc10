"""Paths and parsers the deployment tests share: files under test, read the way tools read them."""

import fnmatch
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "deploy" / "compose.control.yml"]
K8S_DIR = ROOT / "deploy" / "k8s"
SERVICE_DOCKERFILE = ROOT / "service" / "Dockerfile"
TRAINING_DOCKERFILE = ROOT / "training" / "Dockerfile"
DOCKERFILES = [SERVICE_DOCKERFILE, TRAINING_DOCKERFILE]


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema that check-jsonschema ships (vendored from compose-spec)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def dockerfile_instructions(path: Path) -> list[dict[str, Any]]:
    """Instructions as dockerfile-parse reads them (continuation lines joined)."""
    return DockerfileParser(path=str(path), cache_content=True).structure


def stages(path: Path) -> list[list[dict[str, Any]]]:
    """Instructions grouped by build stage, each list starting with its FROM."""
    grouped: list[list[dict[str, Any]]] = []
    for instruction in dockerfile_instructions(path):
        if instruction["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a folder covers its files."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for pattern in dockerignore_patterns():
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!")
        regex = fnmatch.translate(pattern).replace(".*.*/", "(.*/)?")
        if any(re.match(regex, c) for c in candidates):
            verdict = not negate
    return verdict
