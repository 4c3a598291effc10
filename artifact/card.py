"""Reading a version's card (model.json) and checking model.onnx against it.

Each check raises ArtifactError with a message that names the file and the rule; the caller
prefixes where the version is (the service: model, version and folder; training: the folder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from artifact.layout import CARD_FILE, ONNX_FILE, read_file
from artifact.names import ArtifactError

SCHEMA_VERSION = 1
# `image_normalization`: how the service turns an image into the model's input
# (service/images/normalize.py). Optional; cards written before it existed read as the default.
IMAGE_NORMALIZATIONS = ("mnist-centred", "resize-only", "none")
DEFAULT_IMAGE_NORMALIZATION = "resize-only"  # assumes least about the pictures
MNIST_SOURCES = ("mnist", "mnist-5k")


def read_card(folder: Path) -> dict[str, Any]:
    """The card of the version in `folder`: a JSON object with an `onnx` object."""
    raw = read_file(folder / CARD_FILE)
    try:
        card = json.loads(raw, parse_constant=_not_json)
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
        raise ArtifactError(f"{CARD_FILE} is not valid JSON ({error})") from None
    if not isinstance(card, dict) or not isinstance(card.get("onnx"), dict):
        raise ArtifactError(f"{CARD_FILE} has no 'onnx' object")
    return card


def _not_json(constant: str) -> None:
    """NaN and Infinity: Python's json reads them, JSON itself (and every other reader) does not."""
    raise ValueError(f"{constant} is not a JSON value")


def check_identity(card: dict[str, Any], name: str, version: int) -> None:
    """The card is schema 1 and names the folder's model and version."""
    if card.get("schema_version") != SCHEMA_VERSION:
        raise ArtifactError(f"{CARD_FILE} schema_version is {card.get('schema_version')!r}, "
                            f"expected {SCHEMA_VERSION}")
    if card.get("name") != name or card.get("version") != version:
        raise ArtifactError(
            f"{CARD_FILE} names model {card.get('name')!r} version {card.get('version')!r}, "
            f"not the folder's {name!r} version {version}"
        )


def read_verified_onnx(folder: Path, card: dict[str, Any]) -> bytes:
    """The bytes of `folder`/model.onnx once their sha256 matches the card; hand these very
    bytes to onnxruntime, so the file cannot change between the check and the load."""
    if card["onnx"].get("file") != ONNX_FILE:
        raise ArtifactError(f"{CARD_FILE} onnx.file is {card['onnx'].get('file')!r}; "
                            f"only {ONNX_FILE!r} is loaded")
    data = read_file(folder / ONNX_FILE)
    actual = hashlib.sha256(data).hexdigest()
    if actual != card["onnx"].get("sha256"):
        raise ArtifactError(
            f"sha256 of {ONNX_FILE} is {actual} but {CARD_FILE} says "
            f"{card['onnx'].get('sha256')!r}; the file is corrupt or was replaced"
        )
    return data


def card_labels(card: dict[str, Any]) -> list[str]:
    """The class labels, in output order: a list of strings."""
    labels = card.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ArtifactError(f"{CARD_FILE} labels must be a list of strings")
    return labels


def image_normalization(data_name: str) -> str:
    """What training writes for a data source: MNIST digits were centred by mass in a 20x20
    box, so images get the same treatment; Fashion-MNIST items and user data fill the frame,
    so images are only resized."""
    return "mnist-centred" if data_name in MNIST_SOURCES else DEFAULT_IMAGE_NORMALIZATION


def card_image_normalization(card: dict[str, Any]) -> str:
    """The card's image_normalization, or the default for a card without one."""
    value = card.get("image_normalization", DEFAULT_IMAGE_NORMALIZATION)
    if value not in IMAGE_NORMALIZATIONS:
        raise ArtifactError(f"{CARD_FILE} image_normalization is {value!r}; expected one of "
                            f"{list(IMAGE_NORMALIZATIONS)}")
    return str(value)
