"""One finished trial: what it measured, stored as JSON in the Optuna study (every worker's
trials, wherever it ran) and as one file per trial in the worker's sweep folder."""

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class TrialRecord(BaseModel):
    """What one trial measured; metrics are None when the trial failed before producing them."""

    model_config = ConfigDict(extra="forbid")

    trial_id: str
    overrides: dict[str, Any]
    status: Literal["ok", "failed", "pruned"]
    error: str | None = None
    config: dict[str, Any] | None = None
    depth: int | None = None
    width: int | None = None
    parameters: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    stopped_early: bool | None = None
    train_accuracy: float | None = None
    train_loss: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    gap: float | None = None
    train_seconds: float | None = None
    onnx_bytes: int | None = None
    latency_b1_us: float | None = None
    latency_b256_us: float | None = None
    run_dir: str | None = None
    """The core pipeline's run folder: model.onnx, history.json, learning curves."""


def record_path(sweep_dir: Path, trial_id: str) -> Path:
    """Where a trial's record lives inside the sweep folder."""
    return sweep_dir / "trials" / f"{trial_id}.json"


def write_record(sweep_dir: Path, record: TrialRecord) -> Path:
    """Write the record via a temporary file + rename, so a crash never leaves half a record."""
    path = record_path(sweep_dir, record.trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as tmp:
            tmp.write(record.model_dump_json(indent=2))
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_record(sweep_dir: Path, trial_id: str) -> TrialRecord | None:
    """The stored record of a trial, or None if it has not finished yet."""
    path = record_path(sweep_dir, trial_id)
    if not path.exists():
        return None
    return TrialRecord.model_validate_json(path.read_text())
