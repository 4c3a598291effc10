"""ModelInferRequest/Response <-> numpy, with the same datatype and shape rules as HTTP.

Tensors come as typed `contents` or as `raw_input_contents` (little-endian bytes, one entry per
input, as tritonclient sends them); answers always use `raw_output_contents`, as Triton does and
as tritonclient and KServe's client read them. BYTES inputs are encoded images (PNG/JPEG), as
over HTTP: length-prefixed in raw_input_contents (tritonclient) or one per entry of
contents.bytes_contents (KServe). The checks and messages are codec's; only the
words that name a gRPC field differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service import codec
from service.errors import InvalidInput
from service.grpc import grpc_service_pb2 as pb
from service.protocol import DATATYPE_OF_DTYPE, InferenceRequest, RequestOutput

# Which InferTensorContents field carries each datatype, and the dtype it holds (wider than the
# datatype for the small integers, so an out-of-range value is range-checked, not wrapped).
CONTENTS: dict[str, tuple[str, np.dtype[Any]]] = {
    "UINT8": ("uint_contents", np.dtype("<u4")),
    "UINT16": ("uint_contents", np.dtype("<u4")),
    "UINT32": ("uint_contents", np.dtype("<u4")),
    "UINT64": ("uint64_contents", np.dtype("<u8")),
    "INT8": ("int_contents", np.dtype("<i4")),
    "INT16": ("int_contents", np.dtype("<i4")),
    "INT32": ("int_contents", np.dtype("<i4")),
    "INT64": ("int64_contents", np.dtype("<i8")),
    "FP32": ("fp32_contents", np.dtype("<f4")),
    "FP64": ("fp64_contents", np.dtype("<f8")),
}


def parameter_value(parameter: Any) -> Any:
    """The value an InferParameter or ModelRepositoryParameter holds (None when unset)."""
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def parameters(mapping: Any) -> dict[str, Any]:
    """A protobuf parameters map as a plain dict, as the HTTP side parses it from JSON."""
    return {key: parameter_value(value) for key, value in mapping.items()}


def as_inference_request(request: pb.ModelInferRequest) -> InferenceRequest:
    """The parts of the request the data plane reads (id, parameters, requested outputs)."""
    outputs = [RequestOutput(name=o.name, parameters=parameters(o.parameters))
               for o in request.outputs]
    return InferenceRequest.model_construct(id=request.id or None,
                                            parameters=parameters(request.parameters),
                                            inputs=[], outputs=outputs or None)


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Every input tensor as an array, from `contents` or `raw_input_contents`."""
    if not request.inputs:
        raise InvalidInput("inputs: the request has no inputs; send 'input' FP32 [N, 784]")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                           "inputs; send one per input, in the order of inputs")
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name, shape = tensor.name, list(tensor.shape)
        if name in tensors:
            raise InvalidInput(f"input {name!r} appears twice; send each input once")
        images = tensor.datatype == "BYTES"  # encoded PNG/JPEG images, as over HTTP
        dtype = codec.OBJECT if images else codec.tensor_dtype(name, tensor.datatype)
        count = codec.element_count(name, shape)
        if any(key.startswith("shared_memory") for key in tensor.parameters):
            raise InvalidInput(f"input {name!r}: shared memory is not supported; send contents "
                               "or raw_input_contents")
        if images:
            tensors[name] = _bytes_tensor(tensor, raw[index] if raw else None, shape, count,
                                          index)
        elif raw:
            tensors[name] = codec.tensor_from_bytes(name, raw[index], dtype, shape, count,
                                                    f"raw_input_contents[{index}]")
        else:
            tensors[name] = _from_contents(tensor, dtype, shape, count)
    return tensors


def _bytes_tensor(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None,
                  shape: list[int], count: int, index: int) -> np.ndarray:
    """BYTES from raw_input_contents (length-prefixed, tritonclient's form) or from
    contents.bytes_contents (one entry per element, KServe's form)."""
    name = tensor.name
    if raw is not None:
        return codec.bytes_from_prefixed(name, raw, shape, count,
                                         f"raw_input_contents[{index}]")
    sent = [field.name for field, _ in tensor.contents.ListFields()]
    if not sent:
        raise InvalidInput(f"input {name!r} has no data; send contents or raw_input_contents")
    if sent != ["bytes_contents"]:
        raise InvalidInput(f"input {name!r}: datatype BYTES takes its values in "
                           f"contents.bytes_contents, got contents.{', contents.'.join(sent)}")
    return codec.bytes_elements(name, list(tensor.contents.bytes_contents), shape, count)


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, dtype: np.dtype[Any],
                   shape: list[int], count: int) -> np.ndarray:
    name, datatype = tensor.name, DATATYPE_OF_DTYPE[dtype]
    sent = [field.name for field, _ in tensor.contents.ListFields()]
    if not sent:
        raise InvalidInput(f"input {name!r} has no data; send contents or raw_input_contents")
    if datatype not in CONTENTS:
        raise InvalidInput(f"input {name!r}: datatype {datatype} has no contents field; send "
                           "it in raw_input_contents")
    field, held = CONTENTS[datatype]
    if sent != [field]:
        raise InvalidInput(f"input {name!r}: datatype {datatype} takes its values in "
                           f"contents.{field}, got contents.{', contents.'.join(sent)}")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(f"input {name!r}: shape {shape} needs {count} values but contents "
                           f"has {len(values)}")
    return np.array(values, dtype=held).reshape(shape)


def encode_response(model_name: str, model_version: int, request_id: str,
                    outputs: list[tuple[str, np.ndarray, bool]]) -> pb.ModelInferResponse:
    """The answer with every output's bytes in raw_output_contents (little-endian)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=str(model_version),
                                     id=request_id)
    for name, array, _ in outputs:
        array = np.ascontiguousarray(array)
        response.outputs.add(name=name, datatype=DATATYPE_OF_DTYPE[array.dtype],
                             shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response
