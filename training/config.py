"""The one training config: a TOML preset plus `key=value` overrides, validated by pydantic.

Every field is saved into the model card, so a published model says exactly how it was made.
"""

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from artifact.names import check_name

DEFAULT_PRESET = Path(__file__).parent / "configs" / "mnist-5k.toml"

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]


class ConfigError(Exception):
    """A config file or override the user must fix; the message names the key."""


class TrainConfig(BaseModel):
    """Everything one training run needs. Unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    # what and where
    name: Annotated[str, AfterValidator(check_name)] = "mnist-mlp"
    """Model name in the repository: models/<name>/<version>/ (the service's rule: artifact/)."""
    data: str = "mnist-5k"
    """Data source for training.data.load_dataset: a bundled name or a file path."""
    data_cache: Path | None = None
    """Where downloaded data sets are kept; None uses the data loader's default."""
    repository: Path = Path("models")
    """Model repository the service reads."""
    runs_dir: Path = Path("runs")
    """History JSON and plots go to <runs_dir>/<name>/<timestamp>/."""
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    """Share of the training split held out for early stopping and learning curves."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seeds weights, dropout, validation split and batch order (0..2^32-1, NumPy's range)."""

    # model
    hidden_sizes: list[PositiveInt] = [256]
    """Units per hidden layer; [] is softmax regression."""
    activation: Literal["relu", "tanh", "sigmoid", "gelu"] = "relu"
    """Nonlinearity after each hidden layer."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout after each hidden activation."""
    input_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the (preprocessed) pixels: randomly blanks input pixels while training."""
    augment_shift: int = Field(0, ge=0, le=4)
    """Training only: shift each batch's 28x28 images by up to this many pixels (0 = off)."""
    augment_shift_mode: Literal["batch", "image"] = "batch"
    """How augment_shift draws: "batch" moves the whole batch by one (dy, dx), wrapping around;
    "image" moves every image by its own (dy, dx), filling with background (stronger)."""
    augment_flip: bool = False
    """Training only: mirror a random half of each batch left-right (clothing, not digits)."""
    standardize: bool = False
    """Center by the train pixel mean and divide by its std (in the model); else scale to 0..1."""

    # optimization
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """adam, adamw (decoupled weight_decay) or sgd (with momentum)."""
    learning_rate: float = Field(1e-3, gt=0.0)
    """Step size of the optimizer (the schedule's starting value)."""
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    """SGD only."""
    weight_decay: NonNegativeFloat = 0.0
    """Decoupled weight decay, AdamW only (the L2 penalty below works with every optimizer)."""
    batch_size: PositiveInt = 128
    """Training rows per optimizer step."""
    epochs: PositiveInt = 20
    """Upper bound on epochs; early stopping may end sooner."""
    lr_schedule: Literal["none", "cosine", "step"] = "none"
    """Per-epoch learning rate schedule; cosine decays to 0 at the last epoch."""
    lr_step_epochs: PositiveInt = 10
    """Step schedule: multiply the rate by lr_step_gamma every this many epochs."""
    lr_step_gamma: float = Field(0.1, gt=0.0, le=1.0)
    """Step schedule: the factor applied every lr_step_epochs."""

    # regularization
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """Training loss only: aim at 1 - this for the true class, the rest spread evenly over the
    others; curbs the overconfidence that dropout alone leaves (0 = plain cross-entropy)."""
    l1: NonNegativeFloat = 0.0
    """L1 penalty coefficient on weights (never biases): l1 * sum|w|."""
    l2: NonNegativeFloat = 0.0
    """L2 penalty coefficient on weights (never biases): l2 * sum w^2."""
    early_stopping: bool = True
    """Stop when the monitored validation metric stops improving (see patience)."""
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    """Validation metric that early stopping and restore_best watch."""
    patience: PositiveInt = 5
    """Epochs without improvement before stopping."""
    min_delta: NonNegativeFloat = 0.0
    """Smallest change of the monitored metric that counts as an improvement."""
    restore_best: bool = True
    """After training, go back to the weights of the best validation epoch."""

    # quality gate (training/gate.py): a run that fails it publishes nothing and exits non-zero
    divergence_factor: float = Field(10.0, gt=1.0)
    """Stop as diverged when an epoch's mean train loss exceeds this many times ln(classes)
    (the loss of a uniform guess), or is not finite."""
    min_test_accuracy: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["halfway"] = "halfway"
    """Publish only at or above this test accuracy; "halfway": halfway between chance
    (1/classes) and 1, so 0.55 for 10 classes."""
    publish_if_not_worse: bool = False
    """Publish only if at least as accurate as the latest published version, both measured on
    this run's test split (the latest runs through onnxruntime)."""

    # speed
    threads: int = Field(0, ge=0)
    """torch threads; 0 keeps torch's default (one per core)."""
    bf16: bool = False
    """bfloat16 autocast for training matmuls, float32 weights; export and validation stay float32.

    Needs a CPU with bf16 instructions (avx512_bf16/AMX) to be faster, and training warns when it
    has none; runs stay reproducible."""

    # INT8 variant (training/quantize.py)
    int8: bool = False
    """Also publish an INT8 variant as model `<name>-int8` (static quantization, calibrated on
    training images); ~3x the float rows/s at large batches on CPUs with VNNI."""
    int8_max_accuracy_drop: float = Field(0.003, ge=0.0, le=1.0)
    """Largest test accuracy loss against the float model (0.003 = 0.3 points); a variant that
    loses more is not published."""
    int8_calibration_rows: PositiveInt = 2000
    """Training images (a fixed random sample) that calibrate the activation ranges."""
    int8_format: Literal["qdq", "qoperator"] = "qdq"
    """ONNX form of the quantized graph: QDQ (onnxruntime's recommended form) or QOperator."""

    @model_validator(mode="after")
    def _check_combinations(self) -> "TrainConfig":
        if self.weight_decay > 0 and self.optimizer != "adamw":
            raise ValueError(
                f"weight_decay={self.weight_decay} only applies to optimizer 'adamw', "
                f"got '{self.optimizer}'; use l2 for the other optimizers"
            )
        return self


def parse_override(text: str) -> tuple[str, object]:
    """Split `key=value`; the value is read as TOML (`[512,256]`, `1e-4`, `true`), else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not key=value (e.g. l2=1e-4)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words like data=fashion-mnist
    return key, value


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """Parse a TOML file, turning a missing file or bad syntax into one `error` naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{what} {path} is not valid TOML: {problem}") from None


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML preset (default mnist-5k), apply overrides, validate the result.

    Errors name where each bad key came from: the preset file or the command-line override.
    """
    path = DEFAULT_PRESET if path is None else Path(path)
    values = read_toml(path, "config file", ConfigError)
    origins = dict.fromkeys(values, str(path))
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
        origins[key] = f"command line '{text}'"
    source = f"{path} + command line" if overrides else str(path)
    return validate_config(values, source=source, origins=origins)


def validate_config(
    values: dict[str, object], *, source: str = "config", origins: Mapping[str, str] | None = None
) -> TrainConfig:
    """Build a TrainConfig; the one error message names every bad key, where it came from
    (`origins`: key -> file or override; `source` for the rest) and why."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError("; ".join(_describe(e, origins or {}, source) for e in error.errors())
                          ) from None


def closest_key(key: str) -> str | None:
    """The valid key a typo most likely meant, if any is close."""
    matches = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _describe(error: ErrorDetails, origins: Mapping[str, str], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if not key:  # a combination of keys (a model validator): the values are in the message
        message = error["msg"].removeprefix("Value error, ")
        return f"{source}: {message}"
    origin = origins.get(str(error["loc"][0]), source)
    if error["type"] == "extra_forbidden":
        guess = closest_key(key)
        hint = f"; did you mean '{guess}'?" if guess else ""
        return f"{origin}: unknown key '{key}'{hint} (mlp-train train --help lists every key)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{origin}: {key}: {message} (got {error.get('input')!r})"


def describe_keys(values: Mapping[str, object] | None = None) -> str:
    """Every key as a TOML line commented with its default and meaning: the values of a resolved
    config (`mlp-train train --print-config`, itself a valid preset) or the defaults (--help)."""
    lines = []
    for key, field in TrainConfig.model_fields.items():
        value = field.default if values is None else values[key]
        meaning = " ".join((field.description or "").split("\n\n")[0].split())
        if values is not None and value != field.default:
            meaning = f"default {_toml(field.default)}; {meaning}"
        line = f"{key} = {_toml(value)}" if value is not None else f"# {key} = (not set)"
        lines.append(f"{line}  # {meaning}")
    return "\n".join(lines)


def _toml(value: object) -> str:
    """A value as TOML writes it (the config's types: str, Path, bool, number, list; None)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
