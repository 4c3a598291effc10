"""CSV and NPZ user files: the common layouts load, and each kind of bad file is named."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, load_dataset

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def csv_text(labels: list[int], header: bool = False, pixel: float = 7) -> str:
    """One row per label: label first, then 784 pixels (the first one holds the label)."""
    lines = [HEADER] if header else []
    lines += [f"{y},{y}," + ",".join([str(pixel)] * 783) for y in labels]
    return "\n".join(lines) + "\n"


LABELS = [3, 7, 9] * 10  # 30 rows, 10 per class, labels that are not 0..C-1


@pytest.mark.parametrize(("header", "gz"), [(False, False), (True, False), (True, True)])
def test_csv_loads_with_sorted_class_names_and_stratified_split(
    tmp_path: Path, header: bool, gz: bool
) -> None:
    text = csv_text(LABELS, header=header)
    path = tmp_path / ("digits.csv.gz" if gz else "digits.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    data = load_dataset(str(path))
    assert data.class_names == ("3", "7", "9")
    assert np.bincount(data.y_train).tolist() == [8, 8, 8]
    assert np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert data.x_train.shape == (24, 784) and data.x_train.dtype == np.uint8
    # class i is the i-th sorted label value; its first pixel still holds the original label
    original = np.array([3, 7, 9])
    assert np.array_equal(original[data.y_train], data.x_train[:, 0])
    again = load_dataset(str(path))
    assert again.fingerprint() == data.fingerprint()


def test_header_with_numeric_pixel_names(tmp_path: Path) -> None:
    """pandas writes integer column names as numbers: label,0,1,...,783."""
    header = "label," + ",".join(str(i) for i in range(784))
    path = tmp_path / "pandas.csv"
    path.write_text(header + "\n" + csv_text(LABELS))
    assert len(load_dataset(str(path)).y_train) == 24


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    lines = csv_text(LABELS, header=True).splitlines()
    cells = lines[4].split(",")
    cells[12] = "n/a"
    lines[4] = ",".join(cells)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines))
    message = f"{path}: row 5, column 13 (pixel11): 'n/a' is not a number"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(str(path))


def test_nan_cell_is_not_a_number(tmp_path: Path) -> None:
    lines = csv_text(LABELS).splitlines()
    lines[2] = lines[2].replace(",7,", ",nan,", 1)
    path = tmp_path / "nan.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=re.escape("row 3, column 3: 'nan' is not a number")):
        load_dataset(str(path))


def test_ragged_row_and_fractional_label(tmp_path: Path) -> None:
    lines = csv_text(LABELS).splitlines()
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join([*lines[:6], lines[6] + ",0", *lines[7:]]))
    with pytest.raises(DataError, match=re.escape(f"{path}: row 7 has 786 cells, expected 785")):
        load_dataset(str(path))
    path.write_text("\n".join([*lines[:6], "3.5" + lines[6][1:], *lines[7:]]))
    message = f"{path}: row 7, column 1: label 3.5 is not a whole number"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(str(path))


def test_csv_without_784_pixels(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in csv_text(LABELS).splitlines()))
    with pytest.raises(DataError, match=re.escape(f"{path}: 784 columns, expected 785")):
        load_dataset(str(path))


@pytest.mark.parametrize(
    ("pixel", "why"),
    [(300, "300 is outside 0..255"), (-1, "-1 is outside"), (12.5, "12.5 is not a whole number")],
)
def test_csv_pixel_outside_0_to_255(tmp_path: Path, pixel: float, why: str) -> None:
    path = tmp_path / "bright.csv"
    path.write_text(csv_text(LABELS, header=True, pixel=pixel))
    message = f"{path}: row 2, column 3 (pixel1): pixel value {why}"
    with pytest.raises(DataError, match=re.escape(message)):
        load_dataset(str(path))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        (HEADER + "\n", "only a header row"),
    ],
)
def test_csv_with_no_rows(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: {problem}")):
        load_dataset(str(path))


def test_csv_class_too_small_for_the_test_split(tmp_path: Path) -> None:
    path = tmp_path / "rare.csv"
    path.write_text(csv_text([*LABELS, 5]))
    with pytest.raises(DataError, match="class '5' has 1 row; a stratified 20% split"):
        load_dataset(str(path))


@pytest.mark.parametrize("label", ["1e20", "-1e20", "99999999999999999999", "2147483648"])
def test_csv_label_too_large_for_a_class_id(tmp_path: Path, label: str) -> None:
    """1e20 used to wrap to class -9223372036854775808 in int64 and be published."""
    lines = csv_text(LABELS).splitlines()
    lines[3] = label + lines[3][1:]
    path = tmp_path / "huge.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=re.escape(f"{path}: row 4, column 1: label ")
                       + ".* is too large for a class id; labels must be integers between "
                       "-2147483647 and 2147483647"):
        load_dataset(str(path))


def test_npz_label_too_large_for_a_class_id(tmp_path: Path, make_images) -> None:
    y = (np.arange(8) % 2).astype(np.float64)
    y[5] = 1e20
    x = make_images(np.arange(8) % 2, 0)
    path = write_npz(tmp_path / "m.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=re.escape(f"{path} [train]: label 5 is 1e+20, too large "
                                                  "for a class id")):
        load_dataset(str(path))


def test_npz_class_only_in_the_test_split_is_refused(tmp_path: Path, make_images) -> None:
    """A model never shown class 3 would be published with 0.0 on it."""
    y_train, y_test = np.arange(12) % 3, np.arange(8) % 4
    path = write_npz(tmp_path / "m.npz", x_train=make_images(y_train, 1), y_train=y_train,
                     x_test=make_images(y_test, 2), y_test=y_test)
    with pytest.raises(DataError, match=re.escape(
            f"{path}: class '3' is in the test split (2 rows) but not in the training split; "
            "a model cannot learn a class it never sees")):
        load_dataset(str(path))


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("square", [True, False])
def test_npz_keras_layout(tmp_path: Path, make_images, square: bool) -> None:
    y_train, y_test = np.arange(20) % 4, np.arange(8) % 4
    x_train, x_test = make_images(y_train, 1), make_images(y_test, 2)
    if not square:
        x_train, x_test = x_train.reshape(20, 784), x_test.reshape(8, 784)
    path = write_npz(
        tmp_path / "m.npz",
        x_train=x_train,
        y_train=y_train.astype(np.uint8),
        x_test=x_test,
        y_test=y_test,
    )
    data = load_dataset(str(path))
    assert data.x_train.shape == (20, 784) and data.x_test.shape == (8, 784)
    assert data.y_train.dtype == np.int64 and data.class_names == ("0", "1", "2", "3")
    assert np.array_equal(data.x_train, x_train.reshape(20, 784))


def test_npz_missing_array(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "m.npz", x_train=np.zeros((2, 784)), y_train=np.zeros(2))
    with pytest.raises(DataError, match=re.escape(f"{path}: missing array(s) x_test, y_test")):
        load_dataset(str(path))


def test_npz_scaled_pixels_get_a_hint(tmp_path: Path, make_images) -> None:
    y = np.arange(6) % 2
    x = make_images(y, 0) / 255.0
    path = write_npz(tmp_path / "m.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"looks scaled to 0\.\.1; multiply by 255"):
        load_dataset(str(path))


def test_npz_count_mismatch_and_wrong_width(tmp_path: Path) -> None:
    y = np.zeros(4, dtype=np.int64)
    path = write_npz(
        tmp_path / "a.npz",
        x_train=np.zeros((5, 784)),
        y_train=y,
        x_test=np.zeros((4, 784)),
        y_test=y,
    )
    with pytest.raises(DataError, match=re.escape(f"{path} [train]: 5 images but 4 labels")):
        load_dataset(str(path))
    path = write_npz(
        tmp_path / "b.npz",
        x_train=np.zeros((4, 30, 30)),
        y_train=y,
        x_test=np.zeros((4, 784)),
        y_test=y,
    )
    with pytest.raises(DataError, match=re.escape("images have shape [4, 30, 30], expected")):
        load_dataset(str(path))


def test_npz_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    path.touch()
    with pytest.raises(DataError, match=re.escape(f"{path}: the file is empty")):
        load_dataset(str(path))
