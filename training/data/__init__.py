"""Data sources (bundled, downloaded and user files) turned into one `Dataset` form."""

from training.data.dataset import FEATURES, DataError, Dataset
from training.data.sources import load_dataset
from training.data.split import split_validation

__all__ = ["FEATURES", "DataError", "Dataset", "load_dataset", "split_validation"]
