"""Wire types of the Open Inference Protocol (V2) and KServe V1, named as the specs name them.

Plain pydantic models, no logic. Requests are parsed from raw bytes (see `codec`); the response
models document the schema in /openapi.json while the hot path writes the same shape with orjson.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# The one table from V2 datatypes to numpy dtypes (little-endian, as the binary extension sends).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
DATATYPE_OF_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}

Parameters = dict[str, Any]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RequestInput(_Wire):
    """One input tensor: data inline as (nested) JSON lists, or in the binary section."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(_Wire):
    """An output the client wants; `parameters.binary_data` asks for it in the binary section."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Wire):
    """POST /v2/models/{name}/infer body (JSON part, when the binary extension is used)."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Wire):
    """One output tensor of a response; without `data` its bytes are in the binary section."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(_Wire):
    """Answer of /infer: which model version answered, and the outputs."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_Wire):
    """Name, datatype and shape (-1 = any size) of a model input or output."""

    name: str
    datatype: str
    shape: list[int]


class MetadataModelResponse(_Wire):
    """GET /v2/models/{name}: what the model takes and returns."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: Parameters | None = None


class MetadataServerResponse(_Wire):
    """GET /v2: server name, version and supported protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class ReadyResponse(_Wire):
    """Body of a positive readiness answer."""

    name: str | None = None
    ready: bool


class RepositoryIndexRequest(_Wire):
    """POST /v2/repository/index body: `ready` true lists only served versions."""

    ready: bool = False


class RepositoryIndexItem(_Wire):
    """One model version found in the repository and its state."""

    name: str
    version: str
    state: str
    reason: str = ""


class RepositoryLoadRequest(_Wire):
    """POST /v2/repository/models/{name}/load body; parameters.version pins a version."""

    parameters: Parameters | None = None


class RepositoryLoadResponse(_Wire):
    """Which version is now served."""

    name: str
    version: str
    state: str


class ErrorResponse(_Wire):
    """The one error shape of every endpoint."""

    error: str


class PredictRequest(_Wire):
    """KServe V1 predict body: rows of 784 raw pixel values (0..255), or 28x28 images."""

    instances: list[list[float]] | list[list[list[float]]]
    pixel_range: str | None = Field(None, examples=["0..1"], description=(
        '"0..255" (raw pixels, the default) or "0..1" (pixels divided by 255)'))


class Prediction(_Wire):
    """One row's answer in KServe V1."""

    label: int
    class_name: str
    probabilities: list[float]


class PredictResponse(_Wire):
    """KServe V1 predict answer, one prediction per instance."""

    predictions: list[Prediction]


class V1ModelResponse(_Wire):
    """GET /v1/models/{name}."""

    name: str
    ready: bool
