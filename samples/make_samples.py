"""Write the sample requests in samples/ from one real test digit of the bundled mnist-5k data.

Run from the repository root: `python samples/make_samples.py`. The files are committed; the
test tests/e2e/test_samples.py rewrites them into a temporary folder and compares, so they
cannot drift from the data. The digit is from mnist-5k's test split, which no preset trains on.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import load_dataset

TEST_ROW = 700  # mnist-5k test split row 700 (the split is fixed and sorted by label): a 7
SAMPLE = "digit-7"


def sample_digit() -> tuple[np.ndarray, int]:
    """The 28x28 uint8 digit (0..255, light ink on dark, as in MNIST) and its label."""
    data = load_dataset("mnist-5k")
    return data.x_test[TEST_ROW].reshape(28, 28), int(data.y_test[TEST_ROW])


def write_samples(folder: Path) -> list[Path]:
    """The same digit as a KServe V1 body, an Open Inference Protocol V2 body and a PNG."""
    pixels, _ = sample_digit()
    flat = pixels.reshape(-1).tolist()
    v1 = {"instances": [flat]}
    v2 = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": flat}]}
    paths = [folder / f"{SAMPLE}.v1.json", folder / f"{SAMPLE}.v2.json", folder / f"{SAMPLE}.png"]
    paths[0].write_text(json.dumps(v1, separators=(",", ":")) + "\n")
    paths[1].write_text(json.dumps(v2, separators=(",", ":")) + "\n")
    Image.fromarray(pixels).save(paths[2], optimize=True)
    return paths


if __name__ == "__main__":
    for path in write_samples(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(path)
