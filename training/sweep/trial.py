"""One trial: train a config, measure it, export it, time it in onnxruntime -> a TrialRecord.

Never raises for a bad trial: any error becomes a `failed` record with its message, so one
broken combination (or a diverging learning rate) cannot stop the sweep; a trial the pruner
stops becomes a `pruned` record saying after how many epochs.
"""

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from training.config import TrainConfig, validate_config
from training.data import Dataset, load_dataset, split_validation
from training.fit import evaluate
from training.pipeline import train_and_publish
from training.sweep.record import TrialRecord

LATENCY_BATCHES = (1, 256)
LATENCY_REPEATS = 9  # timed blocks per batch size; the median block is reported


EpochHook = Callable[[dict[str, float]], None]


class Pruned(Exception):
    """Raised by an epoch hook to stop a hopeless trial after `epochs` epochs."""

    def __init__(self, epochs: int) -> None:
        super().__init__(f"pruned after {epochs} epochs")
        self.epochs = epochs


@dataclass(frozen=True)
class TrialJob:
    """Everything one trial needs (plain data)."""

    trial_id: str
    overrides: dict[str, Any]
    base: dict[str, Any]
    sweep_dir: str
    threads: int


@functools.lru_cache(maxsize=2)
def cached_dataset(source: str, cache_dir: Path | None) -> Dataset:
    """Each worker reads the data set once, not once per trial (Fashion-MNIST takes ~1 s)."""
    return load_dataset(source, cache_dir=cache_dir)


def run_trial(job: TrialJob, after_epoch: EpochHook | None = None) -> TrialRecord:
    """Train, evaluate, export and time one trial; errors become a failed record."""
    try:
        return measure(job, after_epoch)
    except Pruned as pruned:
        return TrialRecord(trial_id=job.trial_id, overrides=job.overrides, status="pruned",
                           epochs_run=pruned.epochs, error=str(pruned),
                           config={**job.base, **job.overrides})
    except Exception as error:
        return TrialRecord(trial_id=job.trial_id, overrides=job.overrides, status="failed",
                           error=f"{type(error).__name__}: {error}")


def trial_config(job: TrialJob) -> TrainConfig:
    """Base values, then the trial's overrides, then where its run folder goes and the
    per-worker thread count (neither changes the result); validated by TrainConfig."""
    values = {**job.base, **job.overrides, "threads": job.threads,
              "runs_dir": str(Path(job.sweep_dir) / "runs")}
    return validate_config(values, source=f"trial {job.trial_id} {job.overrides}")


def measure(job: TrialJob, after_epoch: EpochHook | None = None) -> TrialRecord:
    """The core pipeline trains, exports and parity-checks (publish=False: run folder only);
    this adds what a comparison needs: train/validation metrics in eval mode, size, latency."""
    config = trial_config(job)
    data = cached_dataset(config.data, config.data_cache)
    run = train_and_publish(config, quiet=True, publish=False, dataset=data,
                            after_epoch=after_epoch)
    x_train, y_train, x_val, y_val = (torch.from_numpy(a) for a in split_validation(
        data.x_train, data.y_train, config.validation_fraction, config.seed))
    train_loss, train_accuracy = evaluate(run.model, x_train, y_train)
    val_loss, val_accuracy = evaluate(run.model, x_val, y_val)
    onnx_bytes = run.onnx_path.read_bytes()
    latency = {batch: latency_per_row_us(onnx_bytes, data.x_test, batch)
               for batch in LATENCY_BATCHES}
    hidden = list(config.hidden_sizes)
    return TrialRecord(
        trial_id=job.trial_id, overrides=job.overrides, status="ok",
        config=config.model_dump(mode="json"), depth=len(hidden),
        width=hidden[0] if hidden and len(set(hidden)) == 1 else None,
        parameters=run.model.parameter_count(), epochs_run=run.fit.epochs_run,
        best_epoch=run.fit.best_epoch, stopped_early=run.fit.stopped_early,
        train_accuracy=train_accuracy, train_loss=train_loss,
        val_accuracy=val_accuracy, val_loss=val_loss,
        test_accuracy=run.test_accuracy, test_loss=float(run.metrics["test_loss"]),  # type: ignore[arg-type]
        gap=train_accuracy - val_accuracy, train_seconds=run.fit.seconds,
        onnx_bytes=len(onnx_bytes), latency_b1_us=latency[1], latency_b256_us=latency[256],
        run_dir=str(run.run_dir),
    )


def latency_per_row_us(onnx_bytes: bytes, rows: np.ndarray, batch: int) -> float:
    """Median onnxruntime time per row (µs) at `batch` rows per call, on one intra-op thread.

    One thread for every trial, so models are compared by their own cost and not by how many
    cores happened to be free; a service running several sessions side by side sees the same.
    Each timed block repeats the call enough times to last ~20 ms, beating timer resolution.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    feed = {"input": np.resize(rows, (batch, rows.shape[1])).astype(np.float32)}
    calls = 1
    while True:  # warm up and size the block
        started = time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        if time.perf_counter() - started > 0.02 or calls >= 4096:
            break
        calls *= 2
    blocks = []
    for _ in range(LATENCY_REPEATS):
        started = time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        blocks.append((time.perf_counter() - started) / calls)
    return statistics.median(blocks) / batch * 1e6
