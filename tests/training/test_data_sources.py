"""Named sources on the real data (bundled mnist-5k, Debian's fashion-mnist) and source names."""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, Dataset, download, load_dataset, sources

FASHION_MISSING = not sources.FASHION_DIR.is_dir()
needs_fashion = pytest.mark.skipif(
    FASHION_MISSING,
    reason="needs the Debian package dataset-fashion-mnist: apt-get install dataset-fashion-mnist",
)


@pytest.fixture(autouse=True)
def no_real_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that wrongly triggers the mnist download fails fast instead of using the internet."""
    monkeypatch.setattr(download, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))


@pytest.fixture(scope="module")
def mnist_5k() -> Dataset:
    return load_dataset("mnist-5k")


def test_mnist_5k_is_the_bundled_digits_split_4000_1000(mnist_5k: Dataset) -> None:
    assert mnist_5k.name == "mnist-5k"
    assert mnist_5k.x_train.shape == (4000, 784) and mnist_5k.x_test.shape == (1000, 784)
    assert mnist_5k.x_train.dtype == np.uint8 and mnist_5k.y_train.dtype == np.int64
    assert mnist_5k.class_names == tuple("0123456789")
    assert np.bincount(mnist_5k.y_train).tolist() == [400] * 10
    assert np.bincount(mnist_5k.y_test).tolist() == [100] * 10
    # the split is a partition of the file's rows: every (pixels, label) row exactly once
    raw = np.loadtxt(sources.mnist_5k_path(), delimiter=",", dtype=np.int64)
    ours = np.concatenate(
        [
            np.column_stack([mnist_5k.x_train, mnist_5k.y_train]),
            np.column_stack([mnist_5k.x_test, mnist_5k.y_test]),
        ]
    )
    assert len(ours) == len(raw) == 5000
    assert Counter(map(bytes, ours.astype(np.uint8))) == Counter(map(bytes, raw.astype(np.uint8)))
    assert mnist_5k.x_train.max() == 255 and mnist_5k.x_train.min() == 0


def test_mnist_5k_is_deterministic_across_loads_and_processes(mnist_5k: Dataset) -> None:
    again = load_dataset()  # the default source
    assert again.fingerprint() == mnist_5k.fingerprint()
    assert np.array_equal(again.x_test, mnist_5k.x_test)
    code = "from training.data import load_dataset; print(load_dataset('mnist-5k').fingerprint())"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == mnist_5k.fingerprint()


def test_mnist_5k_ships_in_the_package_with_its_terms() -> None:
    """No third-party package carries the digits any more; the file and its attribution do."""
    assert sources.MNIST_5K.parent == Path(sources.__file__).parent / "bundled"
    terms = (sources.MNIST_5K.parent / "README.md").read_text()
    assert sources.MNIST_5K_SHA256 in terms
    assert "Attribution-Share Alike 3.0" in terms and "BSD 3-clause" in terms


def test_a_damaged_mnist_5k_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "mnist_5k.csv.gz"
    damaged.write_bytes(sources.MNIST_5K.read_bytes()[:-1])
    monkeypatch.setattr(sources, "MNIST_5K", damaged)
    with pytest.raises(DataError, match=r"mnist-5k file damaged \(sha256 [0-9a-f]{12}\.\.\., "
                       r"expected 846f6cad587f\.\.\.\); reinstall mlp-serve"):
        load_dataset("mnist-5k")
    monkeypatch.setattr(sources, "MNIST_5K", tmp_path / "gone.csv.gz")
    with pytest.raises(DataError, match=r"gone.csv.gz: mnist-5k file missing"):
        load_dataset("mnist-5k")


@needs_fashion
def test_fashion_mnist_official_split_and_names() -> None:
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.x_train.dtype == np.uint8 and data.y_test.dtype == np.int64
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert len(data.class_names) == 10
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert load_dataset("fashion-mnist").fingerprint() == data.fingerprint()


def test_fashion_mnist_from_a_folder(idx_folder: Path) -> None:
    data = load_dataset(f"fashion-mnist:{idx_folder}")
    assert data.name == "fashion-mnist" and data.class_names[1] == "Trouser"
    assert data.x_train.shape == (30, 784)


def test_fashion_mnist_missing_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "FASHION_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist'.*fashion-mnist:/"):
        load_dataset("fashion-mnist")


def test_named_source_with_labels_beyond_its_classes(
    tmp_path: Path, idx_folder: Path, write_idx
) -> None:
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 12])
    write_idx(idx_folder / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match=re.escape("label 12 at row 8 is outside 0..9")):
        load_dataset("mnist", cache_dir=idx_folder)  # all four files present: no download


def test_unknown_source_lists_the_named_ones() -> None:
    with pytest.raises(DataError, match="unknown data source 'mnist-6k': not one of mnist-5k, "):
        load_dataset("mnist-6k")


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "digits.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=re.escape(f"{path}: unsupported file type")):
        load_dataset(str(path))
