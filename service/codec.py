"""Request and response bodies <-> numpy: V2 JSON and binary tensors, KServe V1 instances.

Nothing here knows about models or HTTP: `models/dataplane.py` checks tensors against the served
model, `http/call.py` reads bodies under the size limit and handles Content-Encoding.
Datatype rule: every numeric V2 datatype but BOOL and BF16 is decoded as sent; `dataplane`
range-checks it (0..255) and only then converts to float32, so nothing overflows and integers
stay exact (FP64 fractions round to the nearest float32). BOOL and BF16 are refused. BYTES
elements are kept as bytes (encoded images: base64 strings in JSON, length-prefixed in binary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from service import bounds
from service.errors import InvalidInput, describe_validation_errors
from service.images import from_base64
from service.jsontensors import loads_with_arrays
from service.protocol import DATATYPE_OF_DTYPE, DATATYPES, InferenceRequest

HEADER_LENGTH = "inference-header-content-length"
REJECTED_DATATYPES = {"BOOL", "BF16"}
OBJECT = np.dtype(object)  # BYTES tensors: one Python bytes object per element
BINARY_TYPE = "application/octet-stream"
JSON_TYPE = "application/json"


def split_binary(body: bytes | memoryview, header_length: str | None
                 ) -> tuple[bytes, bytes | memoryview]:
    """Split a binary-extension body into its JSON header and (a view of) its tensor bytes."""
    if header_length is None:
        return bytes(body), b""
    size = parse_header_length(header_length)
    if size is None:
        raise InvalidInput(f"Inference-Header-Content-Length is {header_length!r}; "
                           "expected the byte length of the JSON header")
    if size > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {size} but the body has only "
                           f"{len(body)} bytes")
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def parse_header_length(header_length: str | None) -> int | None:
    """The Inference-Header-Content-Length as an int, None when absent or not ASCII digits."""
    if header_length is None:
        return None
    return bounds.header_number(header_length, "Inference-Header-Content-Length")


def parse_json(raw: bytes) -> Any:
    """orjson.loads with a 400 that says where the JSON broke."""
    if not raw.strip():
        raise InvalidInput("request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        binary = _binary_kind(raw)
        if binary is not None:
            raise InvalidInput(f"request body is not JSON but binary data ({binary}); this "
                               "route takes a JSON object (Content-Type: application/json)"
                               ) from None
        raise InvalidInput(f"request body is not valid JSON: {error}") from None


PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
BINARY_SIGNATURES = (
    (PNG_MAGIC, "a PNG image"), (JPEG_MAGIC, "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"\x1f\x8b", "gzip-compressed; send Content-Encoding: gzip"),
)


def _binary_kind(raw: bytes) -> str | None:
    """What a body that is not UTF-8 text looks like, for the error; None for text."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        kind = next((what for magic, what in BINARY_SIGNATURES if raw.startswith(magic)), None)
        return kind or f"starts with {raw[:8].hex(' ')}"
    return None


def decode_inference_request(
    json_part: bytes, binary: bytes | memoryview
) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """Parse a V2 request and its input tensors (JSON data or binary_data_size chunks).

    Large all-JSON requests first try `jsontensors` (numbers straight into numpy); anything it
    does not accept, or that would fail a check, is decoded here again, so errors stay exact.
    """
    if not binary:
        fast = _decode_fast(json_part)
        if fast is not None:
            return fast
    payload = parse_json(json_part)
    bounds.check_request(payload)  # before pydantic builds an object (or an error) per entry
    try:
        request = InferenceRequest.model_validate(payload)
    except ValidationError as error:
        raise InvalidInput(describe_validation_errors(error.errors())) from None
    # JSON true/false would become 1/0: look for them only when the body spells one.
    maybe_bools = b"true" in json_part or b"false" in json_part
    return request, _tensors(request, binary, maybe_bools)


def decode_inference_request_json(json_part: bytes
                                  ) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """`decode_inference_request` for a body without a binary section."""
    return decode_inference_request(json_part, b"")


def _decode_fast(json_part: bytes) -> tuple[InferenceRequest, dict[str, np.ndarray]] | None:
    """`decode_inference_request` through jsontensors; None whenever the exact path must run.
    (Its arrays hold only numbers: simdjson refuses true/false in a number buffer.)"""
    parsed = loads_with_arrays(json_part, "data")
    if parsed is None:
        return None
    payload, array = parsed
    try:
        bounds.check_request(payload)
        payload["inputs"][0]["data"] = array  # `Any`: validated as is (no setattr after)
        request = InferenceRequest.model_validate(payload)
        return request, _tensors(request, b"", maybe_bools=False)
    except (ValidationError, InvalidInput):
        return None


def _tensors(request: InferenceRequest, binary: bytes | memoryview,
             maybe_bools: bool) -> dict[str, np.ndarray]:
    """The input tensors of a validated request, from JSON data or the binary section."""
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for item in request.inputs:
        if item.name in tensors:
            raise InvalidInput(f"input {item.name!r} appears twice; send each input once")
        dtype = OBJECT if item.datatype == "BYTES" else tensor_dtype(item.name, item.datatype)
        count = element_count(item.name, item.shape)
        parameters = item.parameters or {}
        if any(key.startswith("shared_memory") for key in parameters):
            raise InvalidInput(f"input {item.name!r}: shared memory is not supported; send data "
                               "inline or as binary_data_size")
        size = parameters.get("binary_data_size")
        if size is None:
            if maybe_bools and bounds.contains_bool(item.data):
                raise InvalidInput(f"input {item.name!r}: data must hold only numbers, got "
                                   "JSON true/false")
            tensors[item.name] = (_bytes_from_json if dtype is OBJECT else _from_json)(
                item.name, item.data, dtype, item.shape, count)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {item.name!r}: binary_data_size is {size!r}; "
                               "expected a byte count >= 0")
        if offset + size > len(binary):
            raise InvalidInput(f"input {item.name!r}: binary_data_size is {size} but only "
                               f"{len(binary) - offset} bytes of binary data follow the header")
        tensors[item.name] = (_bytes_from_binary if dtype is OBJECT else _from_binary)(
            item.name, binary[offset:offset + size], dtype, item.shape, count)
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"the body carries {len(binary)} bytes of binary data but the inputs' "
                           f"binary_data_size add up to {offset}")
    return tensors


def bytes_elements(name: str, elements: list[bytes], shape: list[int], count: int,
                   field: str = "contents") -> np.ndarray:
    """BYTES elements as an object array of `shape`; `field` names where they came from."""
    if len(elements) != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} BYTES elements but "
                           f"{field} holds {len(elements)}")
    array = np.empty(count, OBJECT)
    array[:] = elements
    return array.reshape(shape)


def tensor_dtype(name: str, datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype, or 400 for one the service refuses (HTTP and gRPC)."""
    if datatype in REJECTED_DATATYPES or datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported; send FP32 (UINT8..64, "
            "INT8..64, FP16 and FP64 are also accepted and converted to float32)"
        )
    return DATATYPES[datatype]


def element_count(name: str, shape: list[int]) -> int:
    """How many values `shape` holds (HTTP and gRPC), or 400 for a shape no tensor can have
    (negative, huge or too many dimensions; service/bounds.py)."""
    return bounds.element_count(name, shape)


def _from_json(name: str, data: Any, dtype: np.dtype[Any], shape: list[int],
               count: int) -> np.ndarray:
    if data is None:
        raise InvalidInput(f"input {name!r} has no data; send 'data' or "
                           "parameters.binary_data_size with binary data")
    if isinstance(data, list) and len(data) > max(count, 1):  # before numpy copies it all
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values but data has "
                           f"{len(data)} or more")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {name!r}: data must be a flat or evenly nested list of "
                           "numbers") from None
    if array.dtype.kind not in "iuf" and not (array.size == 0 and array.dtype.kind in "f"):
        raise InvalidInput(f"input {name!r}: data must hold only numbers, got JSON "
                           f"{_json_kind(array)}")
    if dtype.kind in "iu" and array.dtype.kind == "f":
        raise InvalidInput(f"input {name!r}: datatype {DATATYPE_OF_DTYPE[dtype]} needs whole "
                           "numbers but data holds fractions")
    if array.size != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values but data has "
                           f"{array.size}")
    return array.reshape(shape)


def _json_kind(array: np.ndarray) -> str:
    return {"b": "true/false", "U": "strings"}.get(array.dtype.kind, "mixed or out-of-range values")


def tensor_from_bytes(name: str, chunk: bytes | memoryview, dtype: np.dtype[Any],
                      shape: list[int], count: int, field: str) -> np.ndarray:
    """A tensor over raw little-endian bytes, checked against its shape; `field` names where the
    bytes came from in the message (HTTP's binary_data_size, gRPC's raw_input_contents[i])."""
    needed = count * dtype.itemsize
    if len(chunk) != needed:
        raise InvalidInput(f"input {name!r}: {field} is {len(chunk)} bytes but shape "
                           f"{shape} of {DATATYPE_OF_DTYPE[dtype]} needs {needed}")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _from_binary(name: str, chunk: bytes | memoryview, dtype: np.dtype[Any], shape: list[int],
                 count: int) -> np.ndarray:
    return tensor_from_bytes(name, chunk, dtype, shape, count, "binary_data_size")


def _bytes_from_json(name: str, data: Any, dtype: np.dtype[Any], shape: list[int],
                     count: int) -> np.ndarray:
    """BYTES elements as JSON: base64 strings (flat or nested), e.g. encoded images."""
    if data is None:
        raise InvalidInput(f"input {name!r} has no data; send 'data' or "
                           "parameters.binary_data_size with binary data")
    flat = data
    while isinstance(flat, list) and flat and all(isinstance(item, list) for item in flat):
        flat = [value for item in flat for value in item]
    if not isinstance(flat, list) or len(flat) != count:
        size = len(flat) if isinstance(flat, list) else 1
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} BYTES elements but data "
                           f"has {size}")
    array = np.empty(count, OBJECT)
    for index, text in enumerate(flat):
        array[index] = from_base64(text, f"input {name!r} element {index}")
    return array.reshape(shape)


def _bytes_from_binary(name: str, chunk: bytes | memoryview, dtype: np.dtype[Any],
                       shape: list[int], count: int) -> np.ndarray:
    return bytes_from_prefixed(name, chunk, shape, count, "the binary data")


def bytes_from_prefixed(name: str, chunk: bytes | memoryview, shape: list[int], count: int,
                        field: str) -> np.ndarray:
    """BYTES elements as tritonclient serializes them (HTTP's binary extension, gRPC's
    raw_input_contents): each a 4-byte little-endian length, then the bytes; `field` names
    where they came from in errors."""
    view, position = memoryview(chunk), 0
    elements: list[bytes] = []
    while position < len(view):
        if position + 4 > len(view):
            raise InvalidInput(f"input {name!r}: BYTES element {len(elements)} has a truncated "
                               "4-byte length prefix")
        size = int.from_bytes(view[position:position + 4], "little")
        position += 4
        if position + size > len(view):
            raise InvalidInput(f"input {name!r}: BYTES element {len(elements)} claims {size} "
                               f"bytes but {len(view) - position} remain")
        elements.append(bytes(view[position:position + size]))
        position += size
    return bytes_elements(name, elements, shape, count, field)


def encode_inference_response(
    model_name: str, model_version: int, request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> tuple[bytes, dict[str, str]]:
    """V2 response: JSON only, or JSON header + binary section when any output is binary."""
    entries, blobs = [], []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array)
        entry: dict[str, Any] = {"name": name, "datatype": DATATYPE_OF_DTYPE[array.dtype],
                                 "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1)
        entries.append(entry)
    header: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id is not None:
        header["id"] = request_id
    header["outputs"] = entries
    json_bytes = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return json_bytes, {"content-type": JSON_TYPE}
    return json_bytes + b"".join(blobs), {"content-type": BINARY_TYPE,
                                          HEADER_LENGTH: str(len(json_bytes))}


def decode_instances(body: bytes) -> tuple[np.ndarray | ImageInstances, Any]:
    """KServe V1 `{"instances": [[784 numbers], ...]}` as an array (shape checked later), or
    `{"instances": [{"image_bytes": {"b64": "..."}}, ...]}` as encoded images; and the optional
    `pixel_range` field as sent (checked with the pixels)."""
    fast = loads_with_arrays(body, "instances")
    if fast is not None:
        payload, array = fast
        return array, payload.get("pixel_range")
    payload = parse_json(body)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput("request body must be a JSON object with 'instances': "
                           "[[784 pixel values], ...]")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(f"instances must be a list of rows, got {type(instances).__name__}")
    if instances and isinstance(instances[0], dict):
        return _image_instances(instances, payload.get("parameters")), None
    if (b"true" in body or b"false" in body) and bounds.contains_bool(instances):
        raise InvalidInput("instances must hold only numbers, got JSON true/false")
    try:
        array = np.asarray(instances, dtype=None)
    except (ValueError, TypeError):
        _refuse_mixing(instances)
        raise InvalidInput("instances must be rows of equal length (784 numbers each)") from None
    if array.size and array.dtype.kind not in "iuf":
        _refuse_mixing(instances)
        raise InvalidInput(f"instances must hold only numbers, got JSON {_json_kind(array)}")
    return array, payload.get("pixel_range")


@dataclass(slots=True)
class ImageInstances:
    """Encoded images from V1 (`image_bytes`, or a raw image/png|jpeg body), still to be decoded
    with the served model's normalization; `return_model_input` asks for the 28x28 input the
    model saw in each prediction (`parameters.return_model_input`, the page uses it); `where`
    names image i in errors."""

    blobs: list[bytes]
    return_model_input: bool = False
    where: str = "instances[{}]"


def _image_instances(instances: list[Any], parameters: Any) -> ImageInstances:
    """TF-Serving's convention for binary inputs: {"image_bytes": {"b64": "<base64>"}}."""
    blobs = []
    for index, item in enumerate(instances):
        where = f"instances[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: instances mix images and pixel rows; send one kind "
                               "per request")
        encoded = item.get("image_bytes")
        if set(item) != {"image_bytes"} or not isinstance(encoded, dict) or "b64" not in encoded:
            raise InvalidInput(f'{where}: expected {{"image_bytes": {{"b64": "<base64 PNG or '
                               f'JPEG>"}}}}, got keys {sorted(item)}')
        blobs.append(from_base64(encoded["b64"], where))
    wanted = isinstance(parameters, dict) and parameters.get("return_model_input") is True
    return ImageInstances(blobs, wanted)


def _refuse_mixing(instances: list[Any]) -> None:
    if any(isinstance(item, dict) for item in instances):
        raise InvalidInput("instances mix pixel rows and images; send one kind per request")


def encode_predictions(labels: tuple[str, ...], outputs: dict[str, np.ndarray],
                       model_inputs: np.ndarray | None = None) -> bytes:
    """KServe V1 answer: one {label, class_name, probabilities} per row (and the row the model
    saw, as 784 integers, when `model_inputs` is given)."""
    predictions = [
        {"label": int(label), "class_name": labels[label], "probabilities": probabilities}
        for label, probabilities in zip(outputs["label"].tolist(), outputs["probabilities"],
                                        strict=True)
    ]
    if model_inputs is not None:
        for prediction, row in zip(predictions, model_inputs.astype(np.uint8), strict=True):
            prediction["model_input"] = row
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
