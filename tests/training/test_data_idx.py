"""IDX files: a folder of train-*/t10k-* files loads, and each kind of bad file is named."""

import re
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, load_dataset
from training.data.idx import read_folder


def test_folder_loads_with_pixels_and_labels_paired(idx_folder: Path) -> None:
    data = load_dataset(str(idx_folder))
    assert data.x_train.shape == (30, 784) and data.x_test.shape == (9, 784)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.class_names == ("0", "1", "2")
    # the fixture writes each label into its image's first pixel: pairs stay aligned
    assert np.array_equal(data.x_train[:, 0], data.y_train)
    assert np.array_equal(data.x_test[:, 0], data.y_test)
    assert data.x_train.flags.writeable  # torch.from_numpy warns on read-only arrays


def test_raw_and_gzipped_files_give_the_same_arrays(
    idx_folder: Path, tmp_path: Path, write_idx, make_images
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    gz = read_folder(idx_folder)
    for split, x, y in (("train", gz[0], gz[1]), ("t10k", gz[2], gz[3])):
        write_idx(raw / f"{split}-images.idx3-ubyte", x.reshape(-1, 28, 28), gz=False)
        write_idx(raw / f"{split}-labels.idx1-ubyte", y, gz=False)
    for ours, theirs in zip(read_folder(raw), gz, strict=True):
        assert np.array_equal(ours, theirs)


def test_wrong_magic_number_is_named(idx_folder: Path, write_idx) -> None:
    path = idx_folder / "train-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(30) % 3, magic=0x0803)  # an images magic on a labels file
    with pytest.raises(DataError, match=re.escape(f"{path}: wrong IDX magic number 0x00000803")):
        load_dataset(str(idx_folder))


def test_images_and_labels_count_mismatch(idx_folder: Path, write_idx) -> None:
    write_idx(idx_folder / "t10k-labels-idx1-ubyte.gz", np.arange(8) % 3)
    with pytest.raises(DataError, match="9 images but 8 labels; the counts must match"):
        load_dataset(str(idx_folder))


def test_header_count_disagrees_with_bytes(idx_folder: Path, write_idx, make_images) -> None:
    path = idx_folder / "train-images-idx3-ubyte.gz"
    write_idx(path, make_images(np.zeros(30, dtype=np.int64), 0), extra=b"\x00" * 5)
    message = f"{path}: header says 30 x 28 x 28 = 23520 values but the file holds 23525"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(str(idx_folder))


def test_images_that_are_not_784_features(idx_folder: Path, write_idx) -> None:
    path = idx_folder / "train-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((30, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=re.escape(f"{path}: images have shape [30, 32, 32]")):
        load_dataset(str(idx_folder))


def test_empty_file(idx_folder: Path) -> None:
    path = idx_folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"{path}: the file is empty")):
        load_dataset(str(idx_folder))


def test_corrupt_gzip(idx_folder: Path) -> None:
    path = idx_folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=re.escape(f"{path}: corrupt gzip data")):
        load_dataset(str(idx_folder))


def test_labels_with_a_gap_are_outside_0_to_c_minus_1(idx_folder: Path, write_idx) -> None:
    write_idx(idx_folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 0, 1, 2, 0, 1, 5]))
    with pytest.raises(DataError, match=r"label 5 at row 8 is outside 0\.\.3 \(4 classes\)"):
        load_dataset(str(idx_folder))


def test_missing_file_in_folder_says_which(idx_folder: Path) -> None:
    (idx_folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"exactly one 't10k-images\*' IDX file .* found none"):
        load_dataset(str(idx_folder))
