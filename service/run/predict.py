"""`mlp-serve predict MODEL_DIR INPUT -o OUTPUT`: predictions for a file without a server.

The same path as a request, minus HTTP: the model is verified and opened by the repository with
the service's session settings (MLP_ORT_THREADS), pixel rows get the service's 0..255 checks,
images the service's decoder, limits and the normalization the model card names. INPUT is
read in batches and OUTPUT written as they come, so a file larger than memory streams through.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, TextIO

import numpy as np

from service.errors import ServiceError
from service.images import NONE, ImageLimits, to_rows
from service.models.repository import PIXELS, ModelRepository, ModelVersion, parse_version
from service.settings import Settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
ARRAY_NAMES = ("x_test", "x", "images", "X")  # which array of an NPZ holds the pixels
LABEL_NAMES = {"x_test": "y_test", "x": "y", "images": "labels", "X": "y"}
FAILED_EXIT = 1


class PredictError(Exception):
    """Bad model folder or input: one line for the user, exit 1."""


@dataclass(slots=True)
class Batch:
    """Rows to predict, their ids in OUTPUT, and the input's own labels when it has them."""

    ids: list[str]
    rows: np.ndarray
    labels: np.ndarray | None = None


def build_parser() -> argparse.ArgumentParser:
    """Flags of `mlp-serve predict`."""
    parser = argparse.ArgumentParser(
        prog="mlp-serve predict",
        description="Predict every row or image of INPUT with a published model, without a "
        "server. INPUT: a CSV (784 pixel columns, or a label then 784), an NPZ or NPY of "
        "pixels ([N, 784] or [N, 28, 28]), or a folder of PNG/JPEG files. OUTPUT: CSV with "
        "id, label, class_name and one probability column per class. Session settings and "
        "image limits come from the MLP_* environment, as for the server.",
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                        help="models/<name>/<version>, or models/<name> for its latest version")
    parser.add_argument("input", type=Path, metavar="INPUT")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                        help="CSV to write ('-' = standard output)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="rows per onnxruntime call (default 256)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def main(argv: list[str]) -> None:
    """Entry point of `mlp-serve predict`; exits 1 with one line on a bad model or input."""
    args = build_parser().parse_args(argv)
    try:
        if args.batch_size < 1:
            raise PredictError(f"--batch-size is {args.batch_size}; expected at least 1")
        overrides: dict[str, Any] = {"control_enabled": False}  # no server, no API key
        settings = Settings(**overrides)
        summary = predict_file(args.model_dir, args.input, args.output, settings,
                               args.batch_size, progress=not args.quiet and sys.stderr.isatty())
    except (PredictError, ServiceError) as error:
        print(f"mlp-serve predict: {getattr(error, 'message', error)}", file=sys.stderr)
        raise SystemExit(FAILED_EXIT) from None
    if not args.quiet:
        print(summary, file=sys.stderr)


def predict_file(model_dir: Path, source: Path, output: Path, settings: Settings,
                 batch_size: int, progress: bool = False) -> str:
    """Write OUTPUT for every row of `source`; returns the one-line summary."""
    model = open_model(model_dir, settings)
    limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    batches, total = read_input(source, model, limits, batch_size)
    started = time.perf_counter()
    done = correct = labelled = 0
    bar = Progress(total, enabled=progress)
    with _open_output(output) as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["id", "label", "class_name", *(f"p_{name}" for name in model.labels)])
        for batch in batches:
            outputs = model.run(batch.rows)
            labels, probabilities = outputs["label"], outputs["probabilities"]
            writer.writerows(
                (row_id, int(label), model.labels[label], *(f"{p:.6g}" for p in row))
                for row_id, label, row in zip(batch.ids, labels.tolist(), probabilities.tolist(),
                                              strict=True))
            if batch.labels is not None:
                correct += int((batch.labels == labels).sum())
                labelled += len(labels)
            done += len(labels)
            bar.update(done)
    bar.close()
    seconds = time.perf_counter() - started
    accuracy = f"; accuracy {correct / labelled:.4f} against the input's labels" if labelled else ""
    return (f"predicted {done} rows with {model.name} version {model.version} in {seconds:.2f} s "
            f"({done / max(seconds, 1e-9):,.0f} rows/s) -> {output}{accuracy}")


def open_model(model_dir: Path, settings: Settings) -> ModelVersion:
    """Verify and open the version in MODEL_DIR (a version folder, or a model's latest)."""
    folder = model_dir.resolve()
    if (folder / "model.json").is_file():
        return ModelRepository(folder.parent.parent, ort_threads=settings.ort_threads).load(
            folder.parent.name, parse_version(folder.name))
    if folder.is_dir():
        return ModelRepository(folder.parent, ort_threads=settings.ort_threads).load(folder.name)
    raise PredictError(f"MODEL_DIR {str(model_dir)!r} is not a folder; expected "
                       "models/<name>/<version> or models/<name>")


def read_input(source: Path, model: ModelVersion, limits: ImageLimits,
               batch_size: int) -> tuple[Iterator[Batch], int | None]:
    """Batches of checked float32 rows from INPUT, and the row count when known up front."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise PredictError(f"INPUT folder {str(source)!r} holds no .png/.jpg/.jpeg files")
        if model.normalization == NONE:
            raise PredictError(f"model {model.name!r} does not take images (its card says "
                               "image_normalization 'none'); give pixel rows instead")
        return _image_batches(files, model.normalization, limits, batch_size), len(files)
    if not source.is_file():
        raise PredictError(f"INPUT {str(source)!r} does not exist")
    name = source.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return _csv_batches(source, batch_size), None
    if name.endswith(".npz"):
        return _npz_batches(source, batch_size)
    if name.endswith(".npy"):
        array = np.load(source, mmap_mode="r", allow_pickle=False)
        return _array_batches(array, None, str(source), batch_size), len(array)
    raise PredictError(f"INPUT {str(source)!r}: expected a folder of images, .csv, .csv.gz, "
                       ".npz or .npy")


def _image_batches(files: list[Path], normalization: str, limits: ImageLimits,
                   batch_size: int) -> Iterator[Batch]:
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        rows = np.empty((len(chunk), PIXELS), np.float32)
        for index, path in enumerate(chunk):  # errors name the file
            where = str(path).replace("{", "{{").replace("}", "}}")
            rows[index] = to_rows([path.read_bytes()], normalization, limits, where)[0]
        yield Batch([path.name for path in chunk], rows)


def _csv_batches(path: Path, batch_size: int) -> Iterator[Batch]:
    """Rows of a CSV: 784 pixels, or a label then 784 pixels (mlp-train's format); an
    optional header line; ids count data rows from 0."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as stream:
        numbered: Iterator[tuple[int, str]] = (
            (n, line) for n, line in enumerate(stream, start=1) if line.strip())
        first = next(numbered, None)
        if first is None:
            raise PredictError(f"{path} is empty")
        if _numbers(first[1]):
            numbered = chain([first], numbered)
        columns, row_id = None, 0
        while chunk := list(islice(numbered, batch_size)):
            values = _parse_csv(chunk, path)
            columns = columns or values.shape[1]
            if values.shape[1] not in (PIXELS, PIXELS + 1) or values.shape[1] != columns:
                raise PredictError(f"{path} line {chunk[0][0]}: {values.shape[1]} columns; "
                                   f"expected {PIXELS} pixels, or a label then {PIXELS} pixels")
            labels = values[:, 0].astype(np.int64) if columns == PIXELS + 1 else None
            pixels = values[:, -PIXELS:]
            bad = _first_bad(pixels)
            if bad is not None:
                raise PredictError(f"{path} line {chunk[bad[0]][0]}, pixel {bad[1]}: "
                                   f"{bad[2]}")
            ids = [str(n) for n in range(row_id, row_id + len(pixels))]
            row_id += len(pixels)
            yield Batch(ids, pixels.astype(np.float32), labels)


def _numbers(line: str) -> bool:
    try:
        [float(value) for value in line.strip().split(",")]
    except ValueError:
        return False
    return True


def _parse_csv(chunk: list[tuple[int, str]], path: Path) -> np.ndarray:
    """The chunk's values; on a bad line, one error naming its line number."""
    try:
        return np.loadtxt([line for _, line in chunk], delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        width = len(chunk[0][1].split(","))
        for number, line in chunk:
            try:
                values = [float(value) for value in line.strip().split(",")]
            except ValueError as error:
                raise PredictError(f"{path} line {number}: {error}") from None
            if len(values) != width:
                raise PredictError(f"{path} line {number}: {len(values)} columns, but line "
                                   f"{chunk[0][0]} has {width}") from None
        raise


def _npz_batches(path: Path, batch_size: int) -> tuple[Iterator[Batch], int]:
    """The pixel array of an NPZ, read member by member without loading it whole."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise PredictError(f"{path} is not an NPZ (zip) file") from None
    names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
    chosen = next((n for n in ARRAY_NAMES if n in names), names[0] if len(names) == 1 else None)
    if chosen is None:
        archive.close()
        raise PredictError(f"{path}: holds arrays {names}; expected one named "
                           f"{' or '.join(ARRAY_NAMES)}")
    labels = None
    label_name = LABEL_NAMES.get(chosen)
    if label_name in names:
        with archive.open(label_name + ".npy") as stream:
            labels = np.lib.format.read_array(stream, allow_pickle=False)
    stream = archive.open(chosen + ".npy")
    shape, dtype = _npy_header(stream, path)
    total = shape[0] if shape else 0

    def batches() -> Iterator[Batch]:
        try:
            yield from _stream_npy(stream, shape, dtype, labels, f"{path}:{chosen}", batch_size)
        finally:
            stream.close()
            archive.close()

    return batches(), total


def _npy_header(stream: IO[bytes], path: Path) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:
        version = np.lib.format.read_magic(stream)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(stream))
    except ValueError as error:
        raise PredictError(f"{path}: not a valid .npy member ({error})") from None
    if fortran or dtype.hasobject or dtype.kind not in "iuf":
        raise PredictError(f"{path}: the pixel array must be a C-ordered numeric array, got "
                           f"{dtype}{' in Fortran order' if fortran else ''}")
    return shape, dtype


def _stream_npy(stream: IO[bytes], shape: tuple[int, ...], dtype: np.dtype[Any],
                labels: np.ndarray | None, where: str, batch_size: int) -> Iterator[Batch]:
    _check_row_shape(shape, where)
    row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
    for start in range(0, shape[0], batch_size):
        count = min(batch_size, shape[0] - start)
        data = stream.read(count * row_bytes)
        if len(data) != count * row_bytes:
            raise PredictError(f"{where}: truncated at row {start}")
        array = np.frombuffer(data, dtype).reshape(count, -1)
        yield _array_batch(array, labels, where, start)


def _array_batches(array: np.ndarray, labels: np.ndarray | None, where: str,
                   batch_size: int) -> Iterator[Batch]:
    _check_row_shape(array.shape, where)
    if array.dtype.kind not in "iuf":
        raise PredictError(f"{where}: pixels must be numbers, got {array.dtype}")
    for start in range(0, len(array), batch_size):
        chunk = np.asarray(array[start:start + batch_size]).reshape(-1, PIXELS)
        yield _array_batch(chunk, labels, where, start)


def _array_batch(rows: np.ndarray, labels: np.ndarray | None, where: str,
                 start: int) -> Batch:
    bad = _first_bad(rows)
    if bad is not None:
        raise PredictError(f"{where} row {start + bad[0]}, pixel {bad[1]}: {bad[2]}")
    ids = [str(n) for n in range(start, start + len(rows))]
    chunk_labels = None if labels is None else np.asarray(labels[start:start + len(rows)])
    return Batch(ids, np.ascontiguousarray(rows, dtype=np.float32), chunk_labels)


def _check_row_shape(shape: tuple[int, ...], where: str) -> None:
    if len(shape) < 2 or int(np.prod(shape[1:])) != PIXELS:
        raise PredictError(f"{where}: shape {list(shape)}; expected [N, {PIXELS}] or [N, 28, 28]")


def _first_bad(rows: np.ndarray) -> tuple[int, int, str] | None:
    """(row, column, problem) of the first value the service would refuse, or None."""
    if bool(rows.min() >= 0 and rows.max() <= 255):  # NaN compares False: checked below
        return None
    row, column = np.argwhere(~((rows >= 0) & (rows <= 255)))[0]
    value = rows[row, column].item()
    return int(row), int(column), f"value {value!r} is not a raw pixel value in 0..255"


def _open_output(output: Path) -> TextIO:
    if str(output) == "-":
        return _KeepOpen(sys.stdout)  # type: ignore[return-value]
    try:
        return output.open("w", newline="")
    except OSError as error:
        raise PredictError(f"cannot write OUTPUT {str(output)!r}: {error.strerror}") from None


class _KeepOpen:
    """stdout as a context manager that does not close it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __enter__(self) -> TextIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.started = self.shown = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.shown < 0.1:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            filled = int(30 * done / self.total)
            text = f"[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{self.total:,} rows"
        else:
            text = f"{done:,} rows"
        sys.stderr.write(f"\r{text} {rate:,.0f} rows/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
