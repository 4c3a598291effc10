"""Both images, replayed from their Dockerfiles: train into a volume, then serve it over HTTP.

This is `docker compose up` without an engine: training/Dockerfile's job, with the command
docker-compose.yml gives it, publishes into a "/models" folder (and a second `up` leaves it
alone), service/Dockerfile's venv (fresh, no torch) serves it with the image's own command and
environment, and the image's HEALTHCHECK is run against it.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.deploy.files import COMPOSE_FILES, SERVICE_DOCKERFILE, TRAINING_DOCKERFILE, load_yaml
from tests.deploy.replay import DockerfileReplay
from training.data import load_dataset

pytestmark = pytest.mark.slow

# The real image reads torch from PyTorch's CPU index; here pip finds the same CPU wheel locally.
LOCAL_TORCH_INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
TRAIN_OVERRIDES = ["epochs=2"]  # appended to the image's command, as `docker compose run` would
ROWS = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The named volume both containers share."""
    return tmp_path_factory.mktemp("volume-models")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, models: Path) -> dict[str, DockerfileReplay]:
    """Both images, built side by side as `docker compose build` does."""
    train = DockerfileReplay(TRAINING_DOCKERFILE, tmp_path_factory.mktemp("train-image"),
                             build_args={"TORCH_INDEX_URL": LOCAL_TORCH_INDEX},
                             volumes={"/models": models})
    service = DockerfileReplay(SERVICE_DOCKERFILE, tmp_path_factory.mktemp("service-image"),
                               volumes={"/models": models})
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = [pool.submit(image.build) for image in (train, service)]
        return {"train": builds[0].result(), "service": builds[1].result()}


@pytest.fixture(scope="module")
def service_image(images: dict[str, DockerfileReplay]) -> DockerfileReplay:
    return images["service"]


def compose_train(image: DockerfileReplay) -> subprocess.CompletedProcess[str]:
    """The compose `train` job: the image's ENTRYPOINT with docker-compose.yml's command."""
    command = load_yaml(COMPOSE_FILES[0])["services"]["train"]["command"]
    env = image.run_env()
    return subprocess.run([*image.executable(env, command), *TRAIN_OVERRIDES], cwd=image.workdir,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(images: dict[str, DockerfileReplay], models: Path) -> Path:
    """The compose `train` job on an empty volume, as on the first `up`; the new version."""
    result = compose_train(images["train"])
    assert result.returncode == 0, result.stderr[-2000:]
    return models / "mnist-mlp" / "1"


@pytest.fixture(scope="module")
def container(service_image: DockerfileReplay, trained: Path) -> Iterator[dict[str, object]]:
    """The service image's command with `docker run -e` overrides; stopped with SIGTERM."""
    port, key = free_port(), secrets.token_hex(16)
    env = service_image.run_env(MLP_HOST="127.0.0.1", MLP_PORT=str(port),
                                MLP_GRPC_PORT=str(free_port()), MLP_API_KEY=key)
    log = service_image.root / "container.log"
    with log.open("w") as output:
        process = subprocess.Popen(service_image.executable(env), cwd=service_image.workdir,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            process.kill()
            process.wait()
            pytest.fail(f"service never became ready: {log.read_text()[-2000:]}")
        yield {"base": base, "key": key, "env": env, "process": process}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_service_image_has_no_torch(service_image: DockerfileReplay) -> None:
    env = service_image.run_env()
    result = subprocess.run(["python", "-c", "import torch"], env=env, capture_output=True,
                            text=True, cwd=service_image.workdir)
    assert result.returncode != 0
    assert "No module named 'torch'" in result.stderr
    # ...while the serving stack is there, in this image's own fresh virtualenv
    check = subprocess.run(["python", "-c", "import onnxruntime, fastapi, sys; print(sys.prefix)"],
                           env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert Path(check.stdout.strip()).is_relative_to(service_image.root)


def test_training_image_publishes_into_the_volume(trained: Path) -> None:
    assert sorted(p.name for p in trained.iterdir()) == ["model.json", "model.onnx"]


def test_the_next_up_does_not_train_again(images: dict[str, DockerfileReplay], trained: Path,
                                          models: Path) -> None:
    result = compose_train(images["train"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        f"mnist-mlp version 1 is already published in {models}; not training "
        "(--skip-if-published)"]
    assert sorted(p.name for p in (models / "mnist-mlp").iterdir()) == ["1"]


def test_mlp_train_in_the_service_image_says_it_needs_the_training_image(
    service_image: DockerfileReplay,
) -> None:
    """The wheel carries training/ too, so the service image has mlp-train: one line, no trace."""
    env = service_image.run_env()
    program = shutil.which("mlp-train", path=env["PATH"])
    assert program and Path(program).is_relative_to(service_image.root), program
    result = subprocess.run([program, "train"], env=env, capture_output=True, text=True,
                            cwd=service_image.workdir, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("mlp-train train: error: needs the training dependencies (torch, ")
    assert line.endswith("use the training image (training/Dockerfile)")


def test_service_image_serves_the_trained_model(container: dict[str, object],
                                                trained: Path) -> None:
    digits = load_dataset("mnist-5k")
    pixels = digits.x_test[:ROWS].astype(np.float32)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [ROWS, 784],
                        "data": pixels.ravel().tolist()}]}
    response = httpx.post(f"{container['base']}/v2/models/mnist-mlp/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [ROWS, 10]
    assert outputs["label"]["shape"] == [ROWS]
    expected = ort.InferenceSession(str(trained / "model.onnx")).run(["label"], {"input": pixels})
    assert outputs["label"]["data"] == expected[0].tolist()
    assert np.mean(np.array(outputs["label"]["data"]) == digits.y_test[:ROWS]) >= 0.8


def test_image_healthcheck_passes_against_the_running_service(
    service_image: DockerfileReplay, container: dict[str, object]
) -> None:
    result = subprocess.run(service_image.healthcheck, env=container["env"], capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 0, result.stderr


def test_model_control_needs_the_key(container: dict[str, object]) -> None:
    url = f"{container['base']}/v2/repository/models/mnist-mlp/load"
    assert httpx.post(url, timeout=10).status_code == 401
    authorized = httpx.post(url, headers={"Authorization": f"Bearer {container['key']}"},
                            timeout=30)
    assert authorized.status_code == 200, authorized.text


def test_container_stop_exits_cleanly(container: dict[str, object]) -> None:
    """`docker stop` sends SIGTERM, then kills after the grace period: we must exit 0 before."""
    process = container["process"]
    assert isinstance(process, subprocess.Popen)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=25) == 0
