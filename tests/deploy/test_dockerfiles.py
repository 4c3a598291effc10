"""Lint of both Dockerfiles and the build context: the rules hadolint and reviewers would apply."""

import json
import re
import shlex
from pathlib import Path

import pytest

from service.settings import Settings
from tests.deploy.files import (
    DOCKERFILES,
    ROOT,
    SERVICE_DOCKERFILE,
    dockerfile_instructions,
    ignored,
    stages,
)

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+$")  # exact patch release and Debian


def values(path: Path, instruction: str) -> list[str]:
    return [i["value"] for i in dockerfile_instructions(path) if i["instruction"] == instruction]


def base_images(path: Path) -> list[str]:
    """FROM images with ARG defaults substituted, skipping references to earlier stages."""
    args = dict(v.split("=", 1) for v in values(path, "ARG") if "=" in v)
    names, images = set(), []
    for value in values(path, "FROM"):
        image, *alias = value.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
        if image not in names:
            images.append(image)
        names.update(alias[1:] if alias and alias[0].upper() == "AS" else [])
    return images


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
class TestDockerfile:
    def test_base_image_is_pinned_to_an_exact_python_release(self, path: Path) -> None:
        assert base_images(path) and all(PINNED_PYTHON.match(i) for i in base_images(path)), (
            base_images(path))

    def test_no_latest_tag_anywhere(self, path: Path) -> None:
        assert not re.search(r":latest\b", path.read_text())

    def test_multi_stage_with_a_slim_runtime(self, path: Path) -> None:
        builder, runtime = stages(path)
        assert builder[0]["value"].endswith("AS builder")
        copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
        assert "--from=builder /opt/venv /opt/venv" in copies
        runtime_runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
        assert "pip" not in runtime_runs  # nothing is installed in the final image

    def test_runs_as_a_numeric_non_root_user(self, path: Path) -> None:
        user = values(path, "USER")[-1]
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, user

    def test_dependencies_are_installed_before_the_source_is_copied(self, path: Path) -> None:
        builder = stages(path)[0]
        copies = [n for n, i in enumerate(builder) if i["instruction"] == "COPY"]
        first_install = next(n for n, i in enumerate(builder)
                             if i["instruction"] == "RUN" and "pip\" install" in i["value"])
        assert builder[copies[0]]["value"] == "pyproject.toml ./"
        assert copies[0] < first_install < copies[1]

    def test_pip_downloads_use_a_build_cache_not_a_layer(self, path: Path) -> None:
        for run in values(path, "RUN"):
            if "pip\" install" in run or "pip\" wheel" in run:
                assert run.startswith("--mount=type=cache,target=/root/.cache/pip"), run


def test_service_image_has_no_torch() -> None:
    installs = " ".join(values(SERVICE_DOCKERFILE, "RUN"))
    assert "torch" not in installs.lower()
    assert "optional-dependencies']['serve']" in installs
    assert "[serve]" in installs and "train" not in installs


def test_service_image_listens_everywhere_on_the_default_port_and_serves_models() -> None:
    envs = dict(shlex.split(pair)[0].split("=", 1)
                for value in values(SERVICE_DOCKERFILE, "ENV") for pair in value.split())
    assert envs["MLP_HOST"] == "0.0.0.0"
    assert envs["MLP_REPOSITORY"] == "/models"
    assert int(envs["MLP_PORT"]) == Settings.model_fields["port"].default
    grpc_port = Settings.model_fields["grpc_port"].default
    assert values(SERVICE_DOCKERFILE, "EXPOSE") == [f"{envs['MLP_PORT']} {grpc_port}"]
    assert json.loads(values(SERVICE_DOCKERFILE, "CMD")[-1]) == ["mlp-serve"]


def test_service_healthcheck_asks_the_ready_endpoint() -> None:
    (healthcheck,) = values(SERVICE_DOCKERFILE, "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    assert command[:2] == ["python", "-c"]
    assert "/v2/health/ready" in command[2] and "MLP_PORT" in command[2]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_source_is_in_the_build_context(path: Path) -> None:
    for value in values(path, "COPY"):
        if value.startswith("--from="):
            continue
        *sources, _ = value.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f".dockerignore drops {source}, which {path} copies"


@pytest.mark.parametrize("kept_out", [
    ".git/HEAD", ".venv/bin/python", "models/mnist-mlp/1/model.onnx", "runs/x/history.json",
    "data/train.csv", "tests/test_layout.py", "service/__pycache__/app.cpython-311.pyc",
    "mlp_serve.egg-info/PKG-INFO", ".pytest_cache/v/x",
])
def test_dockerignore_keeps_local_state_out_of_the_context(kept_out: str) -> None:
    assert ignored(kept_out)


def test_dockerignore_keeps_the_project_sources() -> None:
    assert not any(ignored(p) for p in ["pyproject.toml", "README.md", "service/settings.py",
                                        "artifact/names.py",
                                        "training/configs/mnist-5k.toml"])
