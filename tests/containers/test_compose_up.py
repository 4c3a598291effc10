"""`docker compose up` for real: train into a fresh named volume, serve it, stop it.

docker-compose.yml plus deploy/compose.host-network.yml (this engine has no bridge network), on
a free port and a project name of its own, so the volume is new: the first `up` is the one that
failed when the service image's root-owned /models populated the volume before `train` ran.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.containers.engine import MEASURED, Project, docker, inspect, run, seconds_between
from tests.service.servers import free_port
from training.data import load_dataset

pytestmark = pytest.mark.slow

ROWS = 64
PRESET = "training/configs/mnist-5k.toml"


@pytest.fixture(scope="module")
def project(images: dict[str, str]) -> Iterator[Project]:
    """A compose project brought up once; taken down with its volume at the end."""
    project = Project(f"mlp-serve-test-{secrets.token_hex(4)}", free_port())
    started = time.monotonic()
    try:
        up = project.compose("up", "--detach", "--no-build", "--pull", "never", check=False)
        assert up.returncode == 0, f"first `up` on a fresh volume failed: {up.stderr[-3000:]}"
        data = project.wait_healthy()
        MEASURED["first up -> healthy (trains)"] = f"{time.monotonic() - started:.0f} s"
        first_pass = next(entry for entry in data["State"]["Health"]["Log"]
                          if entry["ExitCode"] == 0)
        MEASURED["service start -> healthy"] = (
            f"{seconds_between(data['State']['StartedAt'], first_pass['End']):.1f} s")
        yield project
    finally:
        project.compose("down", "--volumes", "--timeout", "30", check=False)


def published(project: Project, tmp_path: Path, version: int = 1) -> Path:
    """Copy the model the container published out of the volume (through the service)."""
    target = tmp_path / f"v{version}"
    docker("cp", f"{project.container('service')}:/models/mnist-mlp/{version}", str(target))
    return target


def versions(project: Project) -> list[str]:
    result = project.compose("exec", "-T", "service", "ls", "/models/mnist-mlp")
    return sorted(result.stdout.split())


def test_train_exits_0_and_the_service_is_healthy_read_only_and_unprivileged(
    project: Project,
) -> None:
    train = inspect(project.container("train"))
    assert train["State"]["ExitCode"] == 0
    service = inspect(project.container("service"))
    assert service["State"]["Health"]["Status"] == "healthy"
    assert service["HostConfig"]["ReadonlyRootfs"] is True
    assert service["Config"]["User"] == "10001:10001"
    assert versions(project) == ["1"]


def test_v1_and_v2_predictions_equal_onnxruntime_on_the_published_file(
    project: Project, tmp_path: Path
) -> None:
    folder = published(project, tmp_path)
    digits = load_dataset("mnist-5k")
    rows = digits.x_test[:ROWS].astype(np.float32)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"], {"input": rows})

    v2 = httpx.post(f"{project.url}/v2/models/mnist-mlp/infer", timeout=30, json={
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [ROWS, 784],
                    "data": rows.ravel().tolist()}]})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["label"]["data"] == labels.tolist()
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (ROWS, 10)),
                               probabilities, rtol=1e-5, atol=1e-6)

    v1 = httpx.post(f"{project.url}/v1/models/mnist-mlp:predict", timeout=30,
                    json={"instances": rows.tolist()})
    assert v1.status_code == 200, v1.text
    predictions = v1.json()["predictions"]
    assert [p["label"] for p in predictions] == labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], probabilities,
                               rtol=1e-5, atol=1e-6)
    assert np.mean(labels == digits.y_test[:ROWS]) >= 0.8  # a trained model, not noise


def test_metrics_are_served(project: Project) -> None:
    reply = httpx.get(f"{project.url}/metrics", timeout=30)
    assert reply.status_code == 200
    assert "mlp_" in reply.text


def test_a_second_up_does_not_train_again(project: Project) -> None:
    service_before = project.container("service")
    up = project.compose("up", "--detach", "--no-build", "--pull", "never")
    assert up.returncode == 0
    train = project.compose("logs", "--no-color", "train").stdout
    assert "is already published" in train and "not training (--skip-if-published)" in train
    assert inspect(project.container("train"))["State"]["ExitCode"] == 0
    assert project.container("service") == service_before  # left running, not recreated
    assert versions(project) == ["1"]


def test_compose_run_train_publishes_a_new_version_into_the_volume(project: Project) -> None:
    """What the README says to do for a new version; the volume must be writable for it."""
    result = project.compose("run", "--rm", "train", "train", "--config", PRESET,
                             "repository=/models", "epochs=1", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert versions(project) == ["1", "2"]


def test_training_into_a_bind_mounted_folder_owned_by_uid_10001(
    images: dict[str, str], tmp_path: Path
) -> None:
    """./models on the host: the training image writes as uid 10001 (deploy/README.md)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.chown(models, 10001, 10001)
    result = run(images["train"], "train", "--config", PRESET, "repository=/models", "epochs=1",
                 options=("-v", f"{models}:/models"))
    assert result.returncode == 0, result.stderr[-3000:]
    published_files = sorted(p.name for p in (models / "mnist-mlp" / "1").iterdir())
    assert published_files == ["model.json", "model.onnx"]
    assert (models / "mnist-mlp" / "1" / "model.onnx").stat().st_uid == 10001


def test_compose_stop_drains_and_exits_0_before_the_grace_period(project: Project) -> None:
    """SIGTERM (what `down` sends first): the service answers what it holds and exits 0 itself;
    137 would mean Docker had to kill it after stop_grace_period."""
    started = time.monotonic()
    project.compose("stop", "service")
    MEASURED["compose stop service"] = f"{time.monotonic() - started:.1f} s"
    state = inspect(project.container("service"))["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    down_started = time.monotonic()
    project.compose("down", "--volumes")
    MEASURED["compose down"] = f"{time.monotonic() - down_started:.1f} s"
