"""Data sources (bundled, downloaded and user files) turned into one `Dataset` form."""

from training.data.dataset import FEATURES, DataError, Dataset

__all__ = ["FEATURES", "DataError", "Dataset"]
