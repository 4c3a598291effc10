"""What V1 and V2 share: server state, metadata, input checks and inference through the batcher.

Like MLServer's handlers/dataplane.py: route modules parse and render, this module decides.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact.layout import INPUT_NAME, PIXELS
from service import statistics
from service.bounds import check_unique_outputs
from service.codec import ImageInstances
from service.errors import InvalidInput, ServiceUnavailable
from service.images import NONE, ImageLimits, to_rows
from service.metrics import Metrics
from service.models import pixels
from service.models.batching import Arrival, BatchResult, DeadlineExceededError
from service.models.registry import ModelRegistry, Served
from service.models.repository import ModelVersion
from service.protocol import InferenceRequest
from service.settings import Settings

SERVER_NAME = "mlp-serve"
SERVER_VERSION = "0.1.0"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]


@dataclass(slots=True)
class Lifecycle:
    """Server-wide state read by health checks, the request log and the SIGTERM handler."""

    ready: bool = False
    draining: bool = False
    in_flight: int = 0


# Integer maxima over the bits check a float or int tensor against 0..255 (see below):
# dtype -> (unsigned view, bits of 255, bits of 1).
UNSIGNED_LIMIT: dict[np.dtype[Any], tuple[np.dtype[Any], Any, Any]] = {
    np.dtype("<f4"): (np.dtype("<u4"), np.float32(255).view(np.uint32),
                      np.float32(1).view(np.uint32)),
    np.dtype("<f8"): (np.dtype("<u8"), np.float64(255).view(np.uint64),
                      np.float64(1).view(np.uint64)),
    np.dtype("<i8"): (np.dtype("<u8"), np.uint64(255), np.uint64(1)),
}
FLOAT32 = np.dtype("<f4")


def _raw_and_bright(array: np.ndarray) -> bool:
    """True when every value is in 0..255 and every row's brightest pixel is above 1: the usual
    raw rows, accepted in one pass. False means "look closer" (the exact checks follow).

    float32/float64 (binary and JSON data) and int64 (JSON integers): integer maxima over the
    bits -- a non-negative float's bits grow with its value and NaN/inf lie above 255.0's, and a
    negative value (-0.0 included) has its top bit set. Other dtypes always look closer.
    """
    fast = UNSIGNED_LIMIT.get(array.dtype)
    if fast is None or not array.flags.c_contiguous:
        return False
    bits = array.view(fast[0])
    if array.shape[0] == 1:
        return bool(fast[2] < bits.max() <= fast[1])
    peaks = bits.max(axis=1)
    return bool(peaks.max() <= fast[1] and peaks.min() > fast[2])


def _as_float32(array: np.ndarray) -> np.ndarray:
    """The pixels as C-contiguous, aligned float32: the array itself when it already is."""
    flags = array.flags
    if array.dtype == FLOAT32 and flags.c_contiguous and flags.aligned:
        return array
    return np.ascontiguousarray(array, dtype=FLOAT32)


class Admission:
    """An admitted request while its body is read and decoded. Leaving the `with` block closes
    the batcher's Arrival (the next batch stops waiting for it), on success or error; the
    caller submits right after, with no await in between."""

    __slots__ = ("arrival", "served")

    def __init__(self, served: Served, arrival: Arrival) -> None:
        self.served = served
        self.arrival = arrival

    def __enter__(self) -> Served:
        return self.served

    def __exit__(self, *exc_info: object) -> None:
        self.arrival.done()


class DataPlane:
    """Serve metadata and predictions for whatever the ModelRegistry currently holds."""

    def __init__(self, registry: ModelRegistry, settings: Settings, metrics: Metrics,
                 lifecycle: Lifecycle) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)

    def server_metadata(self) -> dict[str, Any]:
        """GET /v2 body."""
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    def is_ready(self) -> bool:
        """Ready = start-up finished, not shutting down, and a model to serve: every served
        model is ready once loaded, and with none (the last one unloaded) nothing can answer."""
        return self.lifecycle.ready and not self.lifecycle.draining and bool(self.registry.names())

    def not_ready_reason(self) -> str:
        """Why is_ready() is False, for the 503 of /v2/health/ready."""
        if self.lifecycle.draining:
            return "shutting down"
        if not self.lifecycle.ready:
            return "loading models"
        return "no model is served (the last one was unloaded); load one"

    def model_metadata(self, name: str, version: int | None) -> dict[str, Any]:
        """GET /v2/models/{name}[/versions/{v}] body."""
        model = self.registry.get(name, version).model
        tensors = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                   for t in model.outputs]
        return {
            "name": model.name,
            "versions": [str(model.version)],
            "platform": PLATFORM,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                       for t in model.inputs],
            "outputs": tensors,
            "parameters": {"labels": list(model.labels), "sha256": model.sha256,
                           "image_normalization": model.normalization},
        }

    def model_config(self, name: str, version: int | None) -> dict[str, Any]:
        """GET /v2/models/{name}/config: Triton's model configuration, for tritonclient."""
        model = self.registry.get(name, version).model

        def tensors(specs: tuple[Any, ...]) -> list[dict[str, Any]]:
            return [{"name": t.name, "data_type": f"TYPE_{t.datatype}",
                     "dims": list(t.shape[1:]) or [1]} for t in specs]

        return {
            "name": model.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": self.settings.max_rows_per_request,
            "input": tensors(model.inputs),
            "output": tensors(model.outputs),
            "dynamic_batching": {"max_queue_delay_microseconds":
                                 int(self.settings.max_queue_delay_ms * 1000),
                                 "preferred_batch_size": [self.settings.max_batch_size]},
            "version_policy": {"specific": {"versions": [model.version]}},
        }

    def rows(self, array: np.ndarray, field: str, model_name: str = "",
             pixel_range: Any = None, protocol: str = "v2") -> np.ndarray:
        """Check one tensor of pixels ([N, 784] or [N, 28, 28]; 0..255, or 0..1 when the request's
        `pixel_range` says so) and return it as float32 [N, 784] raw pixels. Rows that look
        scaled to 0..1 are refused unless the request declared its range (models/pixels.py)."""
        declared = pixels.pixel_range(pixel_range, protocol)
        array = pixels.as_rows(array)
        shape = list(array.shape)
        if array.ndim != 2 or shape[1] != PIXELS:
            raise InvalidInput(f"{field}: shape {shape} does not fit the model; expected "
                               f"[N, {PIXELS}] (N rows of {PIXELS} raw pixel values)"
                               + pixels.shape_hint(shape))
        if shape[0] == 0:
            raise InvalidInput(f"{field}: the batch is empty (shape {shape}); send at least "
                               "one row")
        limit = self.settings.max_rows_per_request
        if shape[0] > limit:
            raise InvalidInput(f"{field}: {shape[0]} rows in one request, over the limit of "
                               f"{limit} (MLP_MAX_ROWS_PER_REQUEST); split the batch")
        if declared == pixels.UNIT:
            return pixels.from_unit_range(array, field)
        if _raw_and_bright(array):
            return _as_float32(array)
        if not bool(array.min() >= 0 and array.max() <= 255):  # NaN compares False
            inside = (array >= 0) & (array <= 255)
            row, column = np.argwhere(~inside)[0]
            value = array[row, column].item()
            problem = ("is not a finite number" if isinstance(value, float)
                       and not np.isfinite(value) else "is outside 0..255")
            raise InvalidInput(f"{field}: value {value!r} at row {row}, column {column} "
                               f"{problem}; expected raw pixel values in 0..255")
        if declared is None:
            pixels.refuse_scaled_rows(array, field, model_name, protocol)
        return _as_float32(array)

    def v2_rows(self, model: ModelVersion, request: InferenceRequest,
                tensors: dict[str, np.ndarray]) -> np.ndarray:
        """The pixels of a V2 request: exactly one input, named as the model names it."""
        unknown = sorted(set(tensors) - {INPUT_NAME})
        if unknown:
            raise InvalidInput(f"unknown input {unknown[0]!r}; model {model.name!r} has "
                               f"inputs ['{INPUT_NAME}']")
        if INPUT_NAME not in tensors:
            raise InvalidInput(f"input '{INPUT_NAME}' is missing; model {model.name!r} needs "
                               f"'{INPUT_NAME}' FP32 [N, {PIXELS}]")
        tensor = tensors[INPUT_NAME]
        if tensor.dtype == object:  # BYTES: encoded images, shape [N] or [N, 1]
            if tensor.ndim not in (1, 2) or tensor.shape[1:] not in ((), (1,)):
                raise InvalidInput(f"input '{INPUT_NAME}': BYTES shape {list(tensor.shape)}; "
                                   "expected [N] or [N, 1] encoded images")
            return self.image_rows(model, list(tensor.reshape(-1)),
                                   f"input '{INPUT_NAME}' element {{}}")
        declared = (request.parameters or {}).get(pixels.PARAMETER)
        return self.rows(tensor, f"input '{INPUT_NAME}'", model.name, declared)

    def image_rows(self, model: ModelVersion, blobs: list[bytes], where: str) -> np.ndarray:
        """float32 [N, 784] from N encoded images, normalized as the model card says; `where`
        names image i in errors."""
        if model.normalization == NONE:
            raise InvalidInput(f"model {model.name!r} does not take images (its card says "
                               "image_normalization 'none'); send pixel rows")
        if not blobs:
            raise InvalidInput("the batch is empty; send at least one image")
        limit = self.settings.max_rows_per_request
        if len(blobs) > limit:
            raise InvalidInput(f"{len(blobs)} images in one request, over the limit of {limit} "
                               "(MLP_MAX_ROWS_PER_REQUEST); split the batch")
        return to_rows(blobs, model.normalization, self.image_limits, where)

    def v2_outputs(self, model: ModelVersion, request: InferenceRequest) -> list[tuple[str, bool]]:
        """(name, binary?) of each output to return; unknown names are refused before running."""
        parameters = request.parameters or {}
        binary_default = parameters.get("binary_data_output", False) is True
        if not request.outputs:
            return [(name, binary_default) for name in model.output_names]
        check_unique_outputs([output.name for output in request.outputs])
        chosen = []
        for output in request.outputs:
            if output.name not in model.output_names:
                raise InvalidInput(f"unknown output {output.name!r}; model {model.name!r} has "
                                   f"outputs {model.output_names}")
            options = output.parameters or {}
            if "classification" in options or any(k.startswith("shared_memory")
                                                   for k in options):
                raise InvalidInput(f"output {output.name!r}: only the binary_data parameter is "
                                   "supported (no classification or shared memory)")
            chosen.append((output.name, options.get("binary_data", binary_default) is True))
        return chosen

    def deadline(self, arrived: float, parameters: dict[str, Any] | None = None) -> float:
        """monotonic() deadline counted from arrival (reading and decoding included): the
        server's request timeout or the client's shorter one."""
        timeout_s = self.settings.request_timeout_ms / 1000
        client_us = (parameters or {}).get("timeout")  # tritonclient: microseconds
        if isinstance(client_us, int) and not isinstance(client_us, bool) and client_us > 0:
            timeout_s = min(timeout_s, client_us / 1e6)
        return arrived + timeout_s

    def check_deadline(self, deadline: float, arrived: float) -> None:
        """504 now, rather than decode or queue a request whose answer would come too late."""
        now = time.monotonic()
        if now >= deadline:
            raise DeadlineExceededError(now - arrived)

    def admit(self, name: str, version: int | None) -> Admission:
        """Take a new inference request: 503 once shutting down or when the model's queue is
        already at its bound, 404 for unknown models; else its Admission, to hold while the
        body is read and decoded: `with dataplane.admit(name, version) as served: ...`.

        Called when the request arrives, before its body is read: so requests that arrived
        before SIGTERM still finish, and refusing load costs next to nothing (a refusal after
        reading and decoding costs as much as an answer, and the backlog then waits unbounded
        in the socket buffers).
        """
        if self.lifecycle.draining:
            raise ServiceUnavailable("server is shutting down; send the request to another "
                                     "replica")
        served = self.registry.get(name, version)
        return Admission(served, served.batcher.expect())

    def served_model(self, name: str, version: int | None = None) -> ModelVersion:
        """The version of `name` served now (404 if none, or if `version` is not it)."""
        return self.registry.get(name, version).model

    async def infer_v1(self, name: str, instances: np.ndarray, pixel_range: Any,
                       arrived: float) -> tuple[ModelVersion, BatchResult]:
        """Run decoded V1 instances (with the request's declared pixel range, if any) on the
        version served now; (model, its outputs).

        As infer_v2: looked up after the body was read, no await from the lookup to the queue.
        """
        rows = self.rows(instances, "instances", name, pixel_range, "v1")
        served = self.registry.get(name)
        result = await self.predict(served, rows, self.deadline(arrived), arrived)
        return served.model, result

    async def infer_v1_images(self, name: str, images: ImageInstances, arrived: float
                              ) -> tuple[ModelVersion, BatchResult, np.ndarray]:
        """Run V1 images on the version served now, normalized as its card says; (model, its
        outputs, the rows it saw). As infer_v1: no await from the lookup to the queue."""
        served = self.registry.get(name)
        rows = self.image_rows(served.model, images.blobs, images.where)
        result = await self.predict(served, rows, self.deadline(arrived), arrived)
        return served.model, result, rows

    async def infer_v2(
        self, name: str, version: int | None, request: InferenceRequest,
        tensors: dict[str, np.ndarray], arrived: float,
    ) -> tuple[ModelVersion, list[tuple[str, np.ndarray, bool]]]:
        """Run a decoded V2 request on the version served now; (model, [(output, array, binary?)]).

        The lookup comes after the body was read (a swap may have drained the version seen on
        arrival); from the lookup to the batcher's queue there is no await, so it cannot change.
        """
        served = self.registry.get(name, version)
        rows = self.v2_rows(served.model, request, tensors)
        chosen = self.v2_outputs(served.model, request)
        result = await self.predict(served, rows, self.deadline(arrived, request.parameters),
                                    arrived)
        return served.model, [(out, result.outputs[out], binary) for out, binary in chosen]

    async def predict(self, served: Served, rows: np.ndarray, deadline: float,
                      arrived: float) -> BatchResult:
        """Queue rows on the served version's batcher; its errors are the service's own (503
        queue full or stopped, 504 deadline), so they go to the client as they are."""
        self.check_deadline(deadline, arrived)
        name, version = served.model.name, served.model.version
        submitted = time.monotonic()
        try:
            result = await served.batcher.submit(rows, deadline=deadline)
        except Exception:
            self.metrics.statistics.failure(name, version, arrived)
            raise
        # Recorded once this task yields, i.e. after its answer is written: off the latency path
        # (and so the statistics' compute_output spans the encoding of the answer).
        asyncio.get_running_loop().call_soon(self._answered, name, version, len(rows), arrived,
                                             submitted, time.monotonic(), result)
        return result

    def _answered(self, name: str, version: int, rows: int, arrived: float, submitted: float,
                  answered: float, result: BatchResult) -> None:
        """Metrics and statistics of one answered request (one loop callback for both)."""
        self.metrics.observe_rows(name, version, rows, result.queue_wait_s)
        self.metrics.statistics.success(name, version, arrived, submitted, answered,
                                        result.queue_wait_s, result.compute_s)

    def model_statistics(self, name: str | None, version: int | None) -> list[dict[str, Any]]:
        """Triton's statistics of one served model (version), or of all when `name` is None."""
        if name is None:
            versions = {n: [self.registry.get(n).model.version] for n in self.registry.names()}
        else:
            versions = {name: [self.registry.get(name, version).model.version]}
        return statistics.report(self.metrics.families(), versions)
