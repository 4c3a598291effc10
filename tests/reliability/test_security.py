"""Security: the API key, start-up refusal, the body limit, path traversal, ONNX-only loading.

Proves: model control never acts without the exact key (and compares it in constant time);
a server with control enabled never starts behind an empty or placeholder key; a 100 MB body is
refused with 413 while the server's memory barely moves; no model name or version reaches a
file outside the repository; nothing but model.onnx is ever opened or unpickled."""

from __future__ import annotations

import ast
import http.client
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service import settings as settings_module
from service.http import deps
from service.settings import Settings
from tests.reliability.conftest import API_KEY, MODEL, StartServer
from tests.reliability.harness import figures
from tests.reliability.harness.memory import MB, RssSampler
from tests.reliability.harness.server import ServerProcess, run_to_exit
from tests.reliability.harness.tripwire import Tripwire
from tests.reliability.harness.v2 import JSON, error_shape_problem, read_answer, v2_body
from tests.service.model_repo import write_model

ROWS = v2_body(np.zeros((1, 784)))


def served_version(server: ServerProcess) -> str:
    """The version that answers an infer request right now."""
    response = httpx.post(f"{server.base_url}/v2/models/{MODEL}/infer", content=ROWS,
                          headers=JSON, timeout=10)
    assert response.status_code == 200, response.text
    return read_answer(response.content).model_version


def control(server: ServerProcess, path: str, headers: dict[str, str],
            json: object | None = None) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", headers=headers, json=json, timeout=30)


WRONG_KEYS = {
    "no header": {},
    "empty bearer": {"Authorization": "Bearer"},
    "same length": {"Authorization": "Bearer " + "x" * len(API_KEY)},
    "one char off": {"Authorization": "Bearer " + API_KEY[:-1] + "0"},
    "prefix": {"Authorization": "Bearer " + API_KEY[:8]},
    "longer": {"Authorization": "Bearer " + API_KEY + "x"},
    "basic scheme": {"Authorization": "Basic " + API_KEY},
    "key without scheme": {"Authorization": API_KEY},
    "wrong x-api-key": {"X-API-Key": API_KEY.upper()},
}
CONTROL_PATHS = ["/v2/repository/index", f"/v2/repository/models/{MODEL}/load",
                 f"/v2/repository/models/{MODEL}/unload"]


def test_control_without_the_right_key_is_401_and_changes_nothing(
    serve: StartServer, model_repo: Path
) -> None:
    server = serve(model_repo, models=f"{MODEL}:1")
    write_model(model_repo, MODEL, 2)  # a load would switch to it
    for label, headers in WRONG_KEYS.items():
        for path in CONTROL_PATHS:
            response = control(server, path, headers, {"parameters": {"version": "2"}}
                               if path.endswith("load") else None)
            assert response.status_code == 401, (label, path, response.text)
            assert error_shape_problem(401, response.content) == "", (label, path)
            assert served_version(server) == "1", f"{label} {path} changed the served model"
    # The same calls with the key do act, so the 401s above were the key check.
    load = control(server, CONTROL_PATHS[1], {"Authorization": f"Bearer {API_KEY}"})
    assert load.status_code == 200, load.text
    assert served_version(server) == "2"
    figures.record("security-key", wrong_key_cases=len(WRONG_KEYS) * len(CONTROL_PATHS))


def function_tree(path: Path, name: str) -> ast.AST:
    """The definition of function (or method) `name` in `path`, as the file is now."""
    module = ast.parse(path.read_text())
    return next(node for node in ast.walk(module)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name)


def test_api_key_is_compared_in_constant_time() -> None:
    """Behaviour is covered above (equal and different lengths both 401); here the code path:
    the HTTP dependency asks Settings.accepts_api_key (which gRPC asks too), and that check
    uses hmac/secrets.compare_digest and never == / != on the key."""
    dependency = function_tree(Path(deps.__file__), deps.require_api_key.__name__)
    asked = {node.func.attr for node in ast.walk(dependency)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert "accepts_api_key" in asked, ast.unparse(dependency)
    tree = function_tree(Path(settings_module.__file__), Settings.accepts_api_key.__name__)
    source = ast.unparse(tree)
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert "compare_digest" in calls, source
    key_names = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)
                 and "get_secret_value" in ast.unparse(node.value)}
    assert key_names, "no variable holds the server key; test needs updating"
    compares = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(op, ast.Eq | ast.NotEq | ast.In) for op in node.ops)
                and key_names & {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}]
    assert compares == [], f"key compared with ==/!=/in: {compares}"


@pytest.mark.parametrize("key", ["", "changeme", "short-key", "   "])
def test_weak_api_key_refuses_start_with_one_clear_line(model_repo: Path, key: str) -> None:
    result = run_to_exit({"MLP_REPOSITORY": str(model_repo), "MLP_API_KEY": key})
    assert result.returncode != 0
    output = (result.stderr + result.stdout).strip()
    assert "Traceback" not in output, output
    assert len(output.splitlines()) == 1, output
    assert "MLP_API_KEY" in output and "MLP_CONTROL_ENABLED" in output, output


def test_empty_key_is_fine_when_control_is_disabled(serve: StartServer, model_repo: Path) -> None:
    server = serve(model_repo, api_key="", control_enabled="false")
    assert served_version(server) == "1"
    for path in CONTROL_PATHS:
        response = control(server, path, {"Authorization": "Bearer"})
        assert response.status_code == 404, (path, response.text)


def chunks(total: int, size: int = MB) -> Iterator[bytes]:
    block = b"7" * size
    for _ in range(total // size):
        yield block


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_100mb_body_is_refused_before_parsing(
    serve: StartServer, model_repo: Path, declared: bool
) -> None:
    server = serve(model_repo)
    served_version(server)  # warm: first-request allocations are not the body's
    total = 100 * MB
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(total)
    with RssSampler(server.pid) as rss:
        try:
            response = httpx.post(f"{server.base_url}/v2/models/{MODEL}/infer",
                                  content=chunks(total), headers=headers, timeout=60)
            status, text = response.status_code, response.text
        except httpx.TransportError as error:  # the server may close before we finish sending
            status, text = 0, f"{type(error).__name__}: {error}"
    growth = rss.peak - rss.samples[0]
    figures.record(f"body-limit-{'declared' if declared else 'chunked'}", status=status,
                   rss_before_mb=round(rss.samples[0] / MB, 1),
                   rss_peak_growth_mb=round(growth / MB, 1), samples=len(rss.samples))
    assert status == 413, text
    assert error_shape_problem(413, response.content) == ""
    assert growth < 20 * MB, f"RSS grew by {growth / MB:.1f} MB while refusing a 100 MB body"
    assert served_version(server) == "1"


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Tripwire]:
    """FIFO tripwires in a complete-looking model folder next to (outside) the repository."""
    folder = tmp_path / "outside" / MODEL / "1"
    with Tripwire(folder / "model.json", folder / "model.onnx",
                  tmp_path / "outside" / "model.json") as wire:
        yield wire


TRAVERSAL_NAMES = ["..", "..%2F..%2Foutside%2Fmnist-mlp", "%2E%2E%2Foutside%2Fmnist-mlp",
                   "..%252Foutside", "%2Ftmp%2Foutside",
                   "mnist-mlp%2F..%2F..%2Foutside%2Fmnist-mlp",
                   "mnist-mlp%00", "..%5C..%5Coutside", "%2e%2e"]
TRAVERSAL_VERSIONS = ["..", "..%2F..%2F..%2Foutside%2Fmnist-mlp%2F1", "%2E%2E", "1%2F..%2F1",
                      "%2Fetc%2Fpasswd", "-1", "1%00"]


def raw_request(server: ServerProcess, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send `path` byte for byte (httpx would normalise dot segments and re-encode)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_traversal_in_names_and_versions_never_reaches_outside(
    serve: StartServer, model_repo: Path, outside: Tripwire
) -> None:
    server = serve(model_repo)
    auth = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    requests: list[tuple[str, str, bytes, dict[str, str]]] = []
    for name in TRAVERSAL_NAMES:
        for path in (f"/v2/models/{name}", f"/v2/models/{name}/infer", f"/v1/models/{name}",
                     f"/v2/models/{name}/ready", f"/v2/repository/models/{name}/load"):
            requests.append(("POST" if path.endswith(("infer", "load")) else "GET", path,
                             ROWS if path.endswith("infer") else b"", auth))
        requests.append(("GET", f"/v2/models/../../outside/{MODEL}", b"", auth))
    for version in TRAVERSAL_VERSIONS:
        for path in (f"/v2/models/{MODEL}/versions/{version}",
                     f"/v2/models/{MODEL}/versions/{version}/infer"):
            requests.append(("POST" if path.endswith("infer") else "GET", path, ROWS, auth))
    for version in ["../1", "/etc/passwd", "1/../../outside", "..", "1e0", -1]:
        body = f'{{"parameters": {{"version": {version!r}}}}}'.replace("'", '"').encode()
        requests.append(("POST", f"/v2/repository/models/{MODEL}/load", body, auth))

    statuses: dict[int, int] = {}
    for method, path, body, headers in requests:
        status, content = raw_request(server, method, path, body, headers)
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (400, 404), (method, path, body, status, content[:300])
        assert error_shape_problem(status, content) == "", (method, path)
    figures.record("security-traversal", requests=len(requests), statuses=statuses)
    assert outside.tripped == [], f"a file outside the repository was opened: {outside.tripped}"
    assert served_version(server) == "1"


class Sentinel:
    """Unpickling this creates the file `path`: proof that someone loaded the pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_only_model_onnx_is_ever_opened(serve: StartServer, model_repo: Path,
                                        tmp_path: Path) -> None:
    server = serve(model_repo)
    unpickled = tmp_path / "unpickled"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    v2 = write_model(model_repo, MODEL, 2)
    (v2 / "model.pkl").write_bytes(pickle.dumps(Sentinel(unpickled)))
    with Tripwire(v2 / "weights.bin", v2 / "model.data") as wire:
        load = control(server, f"/v2/repository/models/{MODEL}/load", auth)
    assert load.status_code == 200, load.text
    assert served_version(server) == "2"
    assert wire.tripped == [], f"the server opened {wire.tripped}"
    assert not unpickled.exists(), "the server unpickled model.pkl"

    # A version that has a pickle instead of model.onnx, or a card pointing at the pickle.
    v3 = write_model(model_repo, MODEL, 3)
    (v3 / "model.onnx").unlink()
    (v3 / "model.pkl").write_bytes(pickle.dumps(Sentinel(unpickled)))
    v4 = write_model(model_repo, MODEL, 4)
    shutil.move(v4 / "model.onnx", v4 / "model.pkl")
    card = (v4 / "model.json").read_text().replace('"file": "model.onnx"', '"file": "model.pkl"')
    (v4 / "model.json").write_text(card)
    for version in ("3", "4"):
        response = control(server, f"/v2/repository/models/{MODEL}/load", auth,
                           {"parameters": {"version": version}})
        assert 400 <= response.status_code < 500, (version, response.text)
        assert error_shape_problem(response.status_code, response.content) == ""
        assert served_version(server) == "2"
    assert not unpickled.exists(), "the server unpickled model.pkl"
