"""Publish a sweep's best trial into the model repository like a normal training run.

The trial is re-trained from its recorded config (same config + seed = same weights) through
the core pipeline, then published with the pipeline's own model card plus `sweep_id` and
`trial_id`, so a served model says which study picked it.
"""

from pathlib import Path
from typing import Any

import onnx

from artifact.layout import CARD_FILE, ONNX_FILE
from training.card import build_card, card_bytes
from training.config import validate_config
from training.data import load_dataset, split_validation
from training.export import stamp_version
from training.gate import check_before_publishing
from training.pipeline import train_and_publish
from training.provenance import provenance
from training.publish import publish
from training.sweep.record import TrialRecord


def publish_best(
    record: TrialRecord, *, sweep_id: str, threads: int, quiet: bool, command: str | None = None
) -> Path:
    """Re-train `record`'s config with `threads` torch threads and publish it; return the folder."""
    if record.config is None:
        raise ValueError(f"trial {record.trial_id} has no config (status {record.status})")
    values: dict[str, Any] = {**record.config, "threads": threads}
    config = validate_config(values, source=f"best trial {record.trial_id}")
    dataset = load_dataset(config.data, cache_dir=config.data_cache)
    run = train_and_publish(config, quiet=quiet, publish=False, dataset=dataset)
    check_before_publishing(config, dataset, run.test_accuracy)
    proto_bytes = run.onnx_path.read_bytes()
    x_train, _, x_val, _ = split_validation(
        dataset.x_train, dataset.y_train, config.validation_fraction, config.seed)
    splits = {"train": len(x_train), "validation": len(x_val), "test": len(dataset.x_test)}

    def build_files(version: int) -> dict[str, bytes]:
        onnx_bytes = stamp_version(onnx.load_from_string(proto_bytes), version)
        card = build_card(
            config=config, version=version, onnx_bytes=onnx_bytes, model=run.model,
            dataset=dataset, splits=splits, fit_result=run.fit, metrics=run.metrics,
            parity=run.parity, provenance=provenance(config, command),
        )
        card["sweep_id"] = sweep_id
        card["trial_id"] = record.trial_id
        return {ONNX_FILE: onnx_bytes, CARD_FILE: card_bytes(card)}

    return publish(config.repository, config.name, build_files)
