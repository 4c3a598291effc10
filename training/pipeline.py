"""config -> trained, evaluated, exported, verified and published model. CLI and sweeps call this.

Stable API (the sweep feature depends on it):

    train_and_publish(config, *, quiet=False, publish=True, dataset=None, command=None)
        -> RunResult

- `quiet`: no progress bars.
- `publish`: False trains, evaluates, exports and checks parity but writes the ONNX only into
  the run folder (metadata version "0"), leaving the repository untouched. True publishes only
  a model that passes the quality gate (training/gate.py).
- `dataset`: an already loaded `Dataset` (a sweep loads it once); None loads `config.data`.
- `command`: the command line that asked for this run, recorded in the card's provenance.
- `after_epoch`: passed to fit(); may raise to stop training (a sweep's pruner).
Raises DataError, TrainingError, ExportError, QualityGateError or PublishError with a
user-facing message.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import torch

from artifact.layout import CARD_FILE, ONNX_FILE
from training.card import build_card, card_bytes
from training.config import TrainConfig
from training.data import Dataset, load_dataset, split_validation
from training.evaluate import classification_metrics, predict_probabilities
from training.export import Parity, check_parity, stamp_version, to_onnx
from training.fit import FitResult, fit
from training.gate import check_before_publishing
from training.model import MLP, MLPConfig
from training.provenance import provenance
from training.publish import publish as publish_version
from training.quantize import Int8Result, publish_int8
from training.report import plot_confusion_matrix, plot_learning_curves, run_title, save_history
from training.seeding import seed_everything


@dataclass
class RunResult:
    """Everything one run produced; `published_dir` is None when publish=False."""

    config: TrainConfig
    model: MLP
    fit: FitResult
    metrics: dict[str, object]
    parity: Parity
    onnx_path: Path
    onnx_size_bytes: int
    published_dir: Path | None
    run_dir: Path
    int8: Int8Result | None = None

    @property
    def history(self) -> list[dict[str, float]]:
        return self.fit.history

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test_accuracy"])  # type: ignore[arg-type]


def build_model(config: TrainConfig, classes: int, x_train: np.ndarray) -> MLP:
    """The MLP for `config`; standardization constants come from the training pixels only."""
    mean, std = 0.0, 255.0
    if config.standardize:
        pixels = x_train.astype(np.float64)
        mean, std = float(pixels.mean()), float(pixels.std())
    return MLP(MLPConfig(
        inputs=x_train.shape[1], classes=classes, hidden_sizes=list(config.hidden_sizes),
        activation=config.activation, dropout=config.dropout, input_dropout=config.input_dropout,
        pixel_mean=mean, pixel_std=std,
    ))


def make_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S-%f")
    run_dir = Path(config.runs_dir) / config.name / stamp
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def train_and_publish(
    config: TrainConfig,
    *,
    quiet: bool = False,
    publish: bool = True,
    dataset: Dataset | None = None,
    command: str | None = None,
    after_epoch: Callable[[dict[str, float]], None] | None = None,
) -> RunResult:
    """Train `config` end to end; see the module docstring for the contract."""
    if config.threads:
        torch.set_num_threads(config.threads)
    if dataset is None:
        dataset = load_dataset(config.data, cache_dir=config.data_cache)
    labels = list(dataset.class_names)
    x_train, y_train, x_val, y_val = split_validation(
        dataset.x_train, dataset.y_train, config.validation_fraction, config.seed
    )
    generator = seed_everything(config.seed)
    model = build_model(config, len(labels), x_train)
    fit_result = fit(
        model, config, torch.from_numpy(x_train), torch.from_numpy(y_train),
        torch.from_numpy(x_val), torch.from_numpy(y_val), generator=generator, quiet=quiet,
        after_epoch=after_epoch,
    )
    metrics = classification_metrics(
        dataset.y_test, predict_probabilities(model, dataset.x_test), labels
    )
    proto = to_onnx(model, name=config.name, labels=labels)
    parity = check_parity(proto.SerializeToString(), model, dataset.x_test)

    run_dir = make_run_dir(config)
    save_history(fit_result, config.monitor, run_dir / "history.json")
    title = run_title(config, float(metrics["test_accuracy"]), run_dir)  # type: ignore[arg-type]
    plot_learning_curves(fit_result, title, run_dir / "learning_curves.png")
    plot_confusion_matrix(np.array(metrics["confusion_matrix"]), labels, title,
                          run_dir / "confusion_matrix.png")
    splits = {"train": len(x_train), "validation": len(x_val), "test": len(dataset.x_test)}
    origin = provenance(config, command)

    def build_files(version: int) -> dict[str, bytes]:
        onnx_bytes = stamp_version(proto, version)
        card = build_card(
            config=config, version=version, onnx_bytes=onnx_bytes, model=model, dataset=dataset,
            splits=splits, fit_result=fit_result, metrics=metrics, parity=parity,
            provenance=origin,
        )
        return {ONNX_FILE: onnx_bytes, CARD_FILE: card_bytes(card)}

    published_dir = None
    if publish:
        check_before_publishing(config, dataset, float(metrics["test_accuracy"]))  # type: ignore[arg-type]
        published_dir = publish_version(config.repository, config.name, build_files)
        onnx_path = published_dir / ONNX_FILE
    else:
        onnx_path = run_dir / ONNX_FILE
        onnx.save(proto, onnx_path)
    int8 = None
    if config.int8 and published_dir is not None:
        int8 = publish_int8(config, proto, int(published_dir.name), x_train, dataset, partial(
            build_card, model=model, dataset=dataset, splits=splits, fit_result=fit_result,
            provenance=origin))
    return RunResult(
        config=config, model=model, fit=fit_result, metrics=metrics, parity=parity,
        onnx_path=onnx_path, onnx_size_bytes=onnx_path.stat().st_size,
        published_dir=published_dir, run_dir=run_dir, int8=int8,
    )
