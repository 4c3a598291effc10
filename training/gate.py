"""The quality gate: a run that did not learn never reaches the repository the service reads.

Three checks, each ending the run with one line that says why and what to change:
- divergence, checked by fit() after every epoch (training.fit.check_divergence): the epoch's mean
  train loss is not finite or exceeds `divergence_factor` times a uniform guess's loss,
  ln(classes). A loss of 3e21 is finite, so a NaN check alone lets an exploded model through;
- minimum test accuracy: `min_test_accuracy`, by default halfway between chance (1/classes)
  and 1, so 0.55 for 10 classes: far above what a model that did not learn reaches;
- opt-in `publish_if_not_worse`: the latest published version is run through onnxruntime on this
  run's own test split, and the new model must be at least as accurate, so the service keeps
  serving the better one.
"""

from pathlib import Path

from training.config import TrainConfig
from training.data import Dataset
from training.evaluate import ModelFileError, evaluate_published
from training.publish import published_versions


class QualityGateError(Exception):
    """The model was not published; the message says which check refused it and why."""


def min_accuracy(config: TrainConfig, classes: int) -> float:
    """The configured minimum, or halfway between chance and a perfect score."""
    if config.min_test_accuracy != "halfway":
        return float(config.min_test_accuracy)
    chance = 1.0 / classes
    return chance + (1.0 - chance) / 2


def check_accuracy(config: TrainConfig, test_accuracy: float, classes: int) -> None:
    """Raise when the test accuracy is below the minimum."""
    minimum = min_accuracy(config, classes)
    if test_accuracy >= minimum:
        return
    source = "min_test_accuracy" if config.min_test_accuracy != "halfway" else (
        "min_test_accuracy 'halfway' from chance to 1; set a number to change it")
    raise QualityGateError(
        f"not published: test accuracy {test_accuracy:.4f} is below {minimum:.4f} ({source}); "
        f"chance is {1.0 / classes:.4f} for {classes} classes"
    )


def check_not_worse(config: TrainConfig, dataset: Dataset, test_accuracy: float) -> None:
    """With `publish_if_not_worse`: raise unless the latest published version of `config.name`
    is no more accurate than `test_accuracy` on `dataset`'s test split (run by onnxruntime)."""
    if not config.publish_if_not_worse:
        return
    versions = published_versions(config.repository, config.name)
    if not versions:
        return  # nothing to be worse than
    latest = Path(config.repository) / config.name / str(versions[-1])
    try:
        published = float(evaluate_published(latest, dataset)["test_accuracy"])  # type: ignore[arg-type]
    except ModelFileError as error:
        raise QualityGateError(
            f"not published: cannot compare with {latest} (publish_if_not_worse): {error}"
        ) from None
    if test_accuracy < published:
        raise QualityGateError(
            f"not published: test accuracy {test_accuracy:.4f} is below {published:.4f} of the "
            f"latest published version {latest} on the same {dataset.name} test split "
            f"({len(dataset.y_test)} rows; publish_if_not_worse)"
        )


def check_before_publishing(config: TrainConfig, dataset: Dataset, test_accuracy: float) -> None:
    """Every check that needs the finished model; raises QualityGateError on the first refusal."""
    check_accuracy(config, test_accuracy, len(dataset.class_names))
    check_not_worse(config, dataset, test_accuracy)
