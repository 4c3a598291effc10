"""Find model versions on disk, verify them against model.json, and open onnxruntime sessions.

Only `<root>/<name>/<version>/model.onnx` is ever loaded, and only after its sha256 matches the
card; the verified bytes themselves go to onnxruntime, so the file cannot change in between.
Names, versions, files and card checks are the artifact contract's (artifact/), shared with
training; this module adds what needs onnxruntime: the session and its tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from artifact import card as cards
from artifact import layout, names
from artifact.layout import CARD_FILE, INPUT_NAME, ONNX_FILE, PIXELS
from artifact.names import ArtifactError
from service.errors import InvalidInput, ModelLoadError, ModelNotFound

ORT_DATATYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64"}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, V2 datatype and shape (-1 = dynamic) of one model input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One verified version with its open session; immutable, so a swap is one reference."""

    name: str
    version: int
    labels: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str
    session: ort.InferenceSession
    normalization: str = cards.DEFAULT_IMAGE_NORMALIZATION
    """How an image becomes this model's input (model.json `image_normalization`)."""
    output_names: list[str] = field(init=False)
    """Names of the outputs, in the session's order (listed once: every request reads them)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_names", [spec.name for spec in self.outputs])

    def run(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Run float32 rows [n, 784] through the model (called in the batcher's thread)."""
        results = self.session.run(self.output_names, {INPUT_NAME: rows})
        return dict(zip(self.output_names, results, strict=True))


def check_name(name: str) -> str:
    """Refuse (400) a model name that is not a plain folder name (no `..`, `/` or absolute path)."""
    try:
        return names.check_name(name)
    except ArtifactError as error:
        raise InvalidInput(str(error)) from None


def parse_version(text: str | int) -> int:
    """A version is a positive integer written without sign or leading zeros (else 400)."""
    try:
        return names.parse_version(text)
    except ArtifactError as error:
        raise InvalidInput(str(error)) from None


class ModelRepository:
    """A Triton-style folder: <root>/<name>/<version>/{model.onnx,model.json}."""

    def __init__(self, root: Path, *, ort_threads: int = 1) -> None:
        self.root = root
        self.ort_threads = ort_threads

    def check(self) -> None:
        """Fail start-up at once when the repository folder is missing or unreadable."""
        if not self.root.is_dir():
            raise ModelLoadError(
                f"model repository {str(self.root)!r} is not a folder; train a model first "
                "(mlp-train train) or point MLP_REPOSITORY / --repository at one"
            )
        self.model_names()

    def model_names(self) -> list[str]:
        """Valid model names that have at least one version on disk, sorted."""
        try:
            return [name for name in layout.model_names(self.root) if self.versions(name)]
        except ArtifactError as error:  # a folder the service may not read
            raise ModelLoadError(str(error)) from None

    def versions(self, name: str) -> list[int]:
        """Versions of `name` on disk, ascending; hidden and non-integer entries are ignored."""
        try:
            return layout.version_numbers(self.root / check_name(name))
        except ArtifactError as error:
            raise ModelLoadError(str(error)) from None

    def latest(self, name: str) -> int:
        """The highest version of `name` on disk."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.model_names()) or "none"
            raise ModelNotFound(name, detail=f"no versions in repository {str(self.root)!r} "
                                             f"(models there: {known})")
        return versions[-1]

    def load(self, name: str, version: int | None = None) -> ModelVersion:
        """Verify `name` at `version` (default latest) and open its session."""
        version = self.latest(name) if version is None else version
        folder = self.root / check_name(name) / str(version)
        if version not in self.versions(name):
            raise ModelNotFound(name, version, detail=f"no folder {str(folder)!r}")
        where = f"model {name!r} version {version} ({folder})"
        try:
            for path in (folder, folder / CARD_FILE, folder / ONNX_FILE):
                layout.check_inside(path, self.root)
            card = cards.read_card(folder)
            cards.check_identity(card, name, version)
            onnx_bytes = cards.read_verified_onnx(folder, card)
            normalization = cards.card_image_normalization(card)
        except ArtifactError as error:
            raise ModelLoadError(f"{where}: {error}") from None
        session = _open_session(onnx_bytes, self.ort_threads, where)
        inputs, outputs = _check_signature(session, where)
        labels = _check_labels(card, outputs, where)
        _check_card_tensors(card, inputs, outputs, where)
        return ModelVersion(name, version, labels, inputs, outputs,
                            card["onnx"]["sha256"], session, normalization)


def _open_session(onnx_bytes: bytes, threads: int, where: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises several unrelated types for a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ModelLoadError(
            f"{where}: onnxruntime cannot load {ONNX_FILE}: {first_line}"
        ) from None


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(arg.name, ORT_DATATYPES.get(arg.type, arg.type), shape)


def _check_signature(
    session: ort.InferenceSession, where: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    inputs = tuple(_spec(arg) for arg in session.get_inputs())
    outputs = tuple(_spec(arg) for arg in session.get_outputs())
    by_name = {spec.name: spec for spec in outputs}
    problems = []
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].datatype != "FP32" or len(
        inputs[0].shape
    ) != 2 or inputs[0].shape[1] != PIXELS:
        problems.append(f"inputs are {_describe(inputs)}, expected input FP32 [-1, {PIXELS}]")
    probabilities, label = by_name.get("probabilities"), by_name.get("label")
    if (probabilities is None or probabilities.datatype != "FP32"
            or len(probabilities.shape) != 2 or probabilities.shape[1] < 1):
        problems.append(f"outputs are {_describe(outputs)}, expected probabilities FP32 [-1, C]")
    if label is None or label.datatype != "INT64" or len(label.shape) != 1:
        problems.append(f"outputs are {_describe(outputs)}, expected label INT64 [-1]")
    if problems:
        raise ModelLoadError(f"{where}: {ONNX_FILE} does not follow the artifact contract: "
                             + "; ".join(dict.fromkeys(problems)))
    return inputs, outputs


def _describe(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name} {s.datatype} {list(s.shape)}" for s in specs) or "none"


def _check_labels(card: dict[str, Any], outputs: tuple[TensorSpec, ...], where: str
                  ) -> tuple[str, ...]:
    classes = next(s.shape[1] for s in outputs if s.name == "probabilities")
    try:
        labels = cards.card_labels(card)
    except ArtifactError as error:
        raise ModelLoadError(f"{where}: {error}") from None
    if len(labels) != classes:
        raise ModelLoadError(f"{where}: {CARD_FILE} has {len(labels)} labels but the model "
                             f"outputs {classes} classes")
    return tuple(labels)


def _check_card_tensors(card: dict[str, Any], inputs: tuple[TensorSpec, ...],
                        outputs: tuple[TensorSpec, ...], where: str) -> None:
    for key, specs in (("inputs", inputs), ("outputs", outputs)):
        try:
            declared = {(t["name"], t["datatype"], tuple(t["shape"])) for t in card[key]}
        except (KeyError, TypeError):
            raise ModelLoadError(f"{where}: {CARD_FILE} {key} must be a list of "
                                 "{name, datatype, shape}") from None
        actual = {(s.name, s.datatype, s.shape) for s in specs}
        if declared != actual:
            raise ModelLoadError(f"{where}: {CARD_FILE} {key} {sorted(declared)} do not match "
                                 f"{ONNX_FILE} {sorted(actual)}")
