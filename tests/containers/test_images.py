"""The images as built: what each holds, which user runs it, what its wrong half says."""

from __future__ import annotations

import pytest

from tests.containers.engine import inspect, run

pytestmark = pytest.mark.slow


def test_service_image_has_no_torch_but_the_serving_stack(images: dict[str, str]) -> None:
    result = run(images["service"], "python", "-c", "import torch")
    assert result.returncode == 1
    assert "No module named 'torch'" in result.stderr
    check = run(images["service"], "python", "-c", "import onnxruntime, fastapi, uvicorn")
    assert check.returncode == 0, check.stderr


def test_training_image_has_the_cpu_build_of_the_pinned_torch(images: dict[str, str]) -> None:
    result = run(images["train"], "-c", "import torch; print(torch.__version__)",
                 options=("--entrypoint", "python"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2.13.0+cpu"


@pytest.mark.parametrize("which", ["service", "train"])
def test_images_run_as_the_unprivileged_user_10001(images: dict[str, str], which: str) -> None:
    image = images[which]
    assert inspect(image)["Config"]["User"] == "10001:10001"
    result = run(image, "-u", options=("--entrypoint", "id"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "10001"


def test_mlp_train_in_the_service_image_says_in_one_line_it_needs_the_training_image(
    images: dict[str, str],
) -> None:
    result = run(images["service"], "mlp-train", "train")
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("mlp-train train: error: needs the training dependencies (torch, ")
    assert line.endswith("use the training image (training/Dockerfile)")


def test_the_service_image_refuses_writes_under_read_only(images: dict[str, str]) -> None:
    """--read-only with only a /tmp tmpfs writable, as compose runs it (test_compose_up.py shows
    it serves so): the service imports, and a write to the image's filesystem fails."""
    result = run(images["service"], "python", "-c",
                 "import service, onnxruntime, pathlib; pathlib.Path('/x').write_text('x')",
                 options=("--read-only", "--tmpfs", "/tmp"))
    assert "Read-only file system" in result.stderr, result.stderr[-2000:]
    assert inspect(images["service"])["Config"]["Env"].count("ORT_DISABLE_TELEMETRY=1") == 1


def test_training_image_turns_onnxruntime_telemetry_off(images: dict[str, str]) -> None:
    """HOME is writable there, so without the setting onnxruntime would create its folder."""
    result = run(images["train"], "-c",
                 "import onnxruntime, os; print(os.path.exists(os.path.expanduser("
                 "'~/.cache/Microsoft')))", options=("--entrypoint", "python"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert inspect(images["train"])["Config"]["Env"].count("ORT_DISABLE_TELEMETRY=1") == 1
