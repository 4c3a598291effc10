"""The sample requests in samples/ are what samples/make_samples.py makes from the bundled data."""

import json
from pathlib import Path

from samples.make_samples import sample_digit, write_samples

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_committed_samples_are_the_real_digit(tmp_path: Path) -> None:
    for fresh in write_samples(tmp_path):
        assert (SAMPLES / fresh.name).read_bytes() == fresh.read_bytes(), fresh.name
    pixels, label = sample_digit()
    assert label == 7 and pixels.shape == (28, 28) and pixels.max() == 255
    v1 = json.loads((SAMPLES / "digit-7.v1.json").read_text())
    v2 = json.loads((SAMPLES / "digit-7.v2.json").read_text())
    assert v1["instances"][0] == v2["inputs"][0]["data"] == pixels.reshape(-1).tolist()
