"""onnxruntime's telemetry stays off: nothing is written under ~/.cache/Microsoft.

Without ORT_DISABLE_TELEMETRY, importing onnxruntime creates
~/.cache/Microsoft/DeveloperTools/.onnxruntime/ (a device id and an event queue). The service
and the training side set it before their first import; each check runs a real process with a
fresh HOME and the variable removed from its environment, and the first one also shows the
folder does appear without the packages' setting, so the check can fail.
"""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.model_repo import write_model
from tests.service.servers import ServerProcess

TELEMETRY = Path(".cache") / "Microsoft"


# onnxruntime also stays quiet when it sees a CI variable (CI=true), which would hide the
# difference under test: the processes here run without them.
QUIETING = {"ORT_DISABLE_TELEMETRY", "CI", "GITHUB_ACTIONS", "TF_BUILD", "BUILD_ID",
            "JENKINS_URL", "GITLAB_CI", "CONTINUOUS_INTEGRATION"}


def clean_env(home: Path) -> dict[str, str]:
    """The test's environment with a fresh HOME and nothing that turns telemetry off."""
    env = {k: v for k, v in os.environ.items() if k not in QUIETING}
    return env | {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}


def test_bare_onnxruntime_writes_telemetry_but_our_packages_do_not(tmp_path: Path) -> None:
    for name, code in [("bare", "import onnxruntime"),
                       ("service", "import service.models.repository"),
                       ("training", "import training.evaluate")]:
        home = tmp_path / name
        home.mkdir()
        subprocess.run([sys.executable, "-c", code], env=clean_env(home), check=True, timeout=120)
        assert (home / TELEMETRY).exists() == (name == "bare"), name


def test_serving_predictions_writes_nothing_under_the_home_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This process imported `service` already (which set it); the server must set it itself.
    for name in QUIETING:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    repo = tmp_path / "models"
    write_model(repo, "mnist-mlp", 1)
    server = ServerProcess(repo, env=clean_env(home))
    try:
        server.wait_ready()
        body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                            "data": [0.0] * 784}]}
        reply = httpx.post(server.url + "/v2/models/mnist-mlp/infer", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
    finally:
        code, stderr = server.stop()
    assert code == 0, stderr
    assert not (home / TELEMETRY).exists()
