"""DataPlane on its own (no HTTP): input checks, outputs chosen, deadlines, admission, and
inference through a real batcher and onnxruntime session, compared with onnxruntime itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from service.errors import DeadlineExceeded, InvalidInput, ModelNotFound, ServiceUnavailable
from service.metrics import Metrics
from service.models.dataplane import DataPlane, Lifecycle
from service.models.registry import ModelRegistry
from service.models.repository import ModelRepository
from service.protocol import InferenceRequest
from tests.service.conftest import MODEL, pixels, reference, settings_for

T = TypeVar("T")


def run_with(repo: Path, test: Callable[[DataPlane], Awaitable[T]], **overrides: object) -> T:
    """Load `repo`'s latest mnist-mlp into a fresh DataPlane, run `test`, unload."""
    settings = settings_for(repo, **overrides)

    async def main() -> T:
        metrics = Metrics()
        registry = ModelRegistry(ModelRepository(repo), settings, metrics)
        await registry.load(MODEL)
        try:
            return await test(DataPlane(registry, settings, metrics, Lifecycle(ready=True)))
        finally:
            await registry.unload_all()

    return asyncio.run(main())


def plane(repo: Path, **overrides: object) -> DataPlane:
    """A DataPlane with no model loaded, for the checks that need none."""
    settings = settings_for(repo, **overrides)
    metrics = Metrics()
    return DataPlane(ModelRegistry(ModelRepository(repo), settings, metrics), settings, metrics,
                     Lifecycle())


def test_float32_rows_pass_through_without_a_copy(repo: Path) -> None:
    rows = pixels(2)
    assert plane(repo).rows(rows, "instances") is rows
    converted = plane(repo).rows(rows.astype(np.int64), "instances")
    assert converted.dtype == np.float32 and np.array_equal(converted, rows)


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((2, 783)), "x: shape [2, 783] does not fit the model; expected [N, 784] (N rows "
                         "of 784 raw pixel values)"),
    (np.zeros(784), "x: shape [784] does not fit the model"),
    (np.zeros((0, 784)), "x: the batch is empty (shape [0, 784]); send at least one row"),
    (np.zeros((65, 784)), "x: 65 rows in one request, over the limit of 64 "
                          "(MLP_MAX_ROWS_PER_REQUEST); split the batch"),
])
def test_rows_of_the_wrong_shape_are_refused(repo: Path, array: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        plane(repo).rows(array, "x")
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(("value", "problem"), [
    (256.0, "256.0 at row 1, column 5 is outside 0..255"),
    (-0.5, "-0.5 at row 1, column 5 is outside 0..255"),
    (float("nan"), "nan at row 1, column 5 is not a finite number"),
    (float("inf"), "inf at row 1, column 5 is not a finite number"),
])
def test_pixels_outside_0_255_are_named(repo: Path, value: float, problem: str) -> None:
    rows = pixels(2).astype(np.float64)
    rows[1, 5] = value
    with pytest.raises(InvalidInput) as error:
        plane(repo).rows(rows, "instances")
    assert str(error.value) == f"instances: value {problem}; expected raw pixel values in 0..255"


def test_deadline_is_the_shorter_of_server_and_client(repo: Path) -> None:
    dataplane = plane(repo, request_timeout_ms=2000)
    assert dataplane.deadline(10.0) == 12.0
    assert dataplane.deadline(10.0, {"timeout": 500_000}) == 10.5  # tritonclient: microseconds
    assert dataplane.deadline(10.0, {"timeout": 9_000_000}) == 12.0
    assert dataplane.deadline(10.0, {"timeout": True}) == 12.0  # not a number of microseconds
    with pytest.raises(DeadlineExceeded, match=r"^request timed out after \d+ ms waiting"):
        dataplane.check_deadline(time.monotonic() - 1, time.monotonic() - 2)


def test_admission_refuses_while_draining_and_unknown_models(repo: Path) -> None:
    async def test(dataplane: DataPlane) -> None:
        with pytest.raises(ModelNotFound, match="model 'nope' is not loaded"):
            dataplane.admit("nope", None)
        dataplane.lifecycle.draining = True
        with pytest.raises(ServiceUnavailable, match="server is shutting down"):
            dataplane.admit(MODEL, None)

    run_with(repo, test)


def test_admission_holds_the_batchers_arrival_until_the_block_ends(repo: Path) -> None:
    async def test(dataplane: DataPlane) -> tuple[int, int, int]:
        batcher = dataplane.registry.get(MODEL).batcher
        before = batcher._arriving
        with pytest.raises(InvalidInput), dataplane.admit(MODEL, None) as served:
            inside = batcher._arriving
            assert served.model.version == 2
            raise InvalidInput("the body was bad")
        return before, inside, batcher._arriving

    assert run_with(repo, test) == (0, 1, 0)


def test_a_full_queue_refuses_on_arrival_with_retry_after(repo: Path) -> None:
    async def test(dataplane: DataPlane) -> ServiceUnavailable:
        batcher = dataplane.registry.get(MODEL).batcher
        batcher._queued_rows = 1  # as if one row waited: the bound of 1 is reached
        try:
            with pytest.raises(ServiceUnavailable) as error:
                dataplane.admit(MODEL, None)
        finally:
            batcher._queued_rows = 0
        return error.value

    error = run_with(repo, test, max_queue_rows=1)
    assert (error.status_code, error.headers) == (503, {"Retry-After": "1"})
    assert str(error) == "server busy: 1 rows are queued, at the limit of 1; retry after 1 s"


def test_infer_v1_and_v2_answer_as_onnxruntime(repo: Path) -> None:
    rows = pixels(3)
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "input", "shape": [3, 784], "datatype": "FP32", "data": [0]}],
         "outputs": [{"name": "label"}]})

    async def test(dataplane: DataPlane) -> tuple[object, ...]:
        arrived = time.monotonic()
        model1, result = await dataplane.infer_v1(MODEL, rows.astype(np.int64), None, arrived)
        model2, outputs = await dataplane.infer_v2(MODEL, 2, request, {"input": rows}, arrived)
        return model1.version, result.outputs, model2.version, outputs

    version1, v1_outputs, version2, v2_outputs = run_with(repo, test)
    expected = reference(repo / MODEL / "2", rows)
    assert version1 == version2 == 2
    np.testing.assert_allclose(v1_outputs["probabilities"], expected["probabilities"], rtol=1e-6)
    assert [(name, binary) for name, _, binary in v2_outputs] == [("label", False)]
    assert np.array_equal(v2_outputs[0][1], expected["label"])


@pytest.mark.parametrize(("request_body", "tensors", "message"), [
    ({"outputs": [{"name": "logits"}]}, {"input": pixels(1)},
     "unknown output 'logits'; model 'mnist-mlp' has outputs ['probabilities', 'label']"),
    ({"outputs": [{"name": "label", "parameters": {"classification": 3}}]}, {"input": pixels(1)},
     "output 'label': only the binary_data parameter is supported (no classification or "
     "shared memory)"),
    ({}, {"input": pixels(1), "extra": pixels(1)},
     "unknown input 'extra'; model 'mnist-mlp' has inputs ['input']"),
    ({}, {}, "input 'input' is missing; model 'mnist-mlp' needs 'input' FP32 [N, 784]"),
])
def test_v2_requests_that_do_not_fit_the_model(repo: Path, request_body: dict[str, object],
                                               tensors: dict[str, np.ndarray],
                                               message: str) -> None:
    request = InferenceRequest.model_validate(
        {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [0]}],
         **request_body})

    async def test(dataplane: DataPlane) -> None:
        with pytest.raises(InvalidInput) as error:
            await dataplane.infer_v2(MODEL, None, request, tensors, time.monotonic())
        assert str(error.value) == message

    run_with(repo, test)


def test_a_request_past_its_deadline_is_not_queued(repo: Path) -> None:
    async def test(dataplane: DataPlane) -> None:
        with pytest.raises(DeadlineExceeded):
            await dataplane.infer_v1(MODEL, pixels(1), None, time.monotonic() - 60)
        assert dataplane.registry.get(MODEL).batcher.queue_rows == 0

    run_with(repo, test)
