"""The service's accuracy on real test digits sent as images is close to its accuracy on the
raw pixels: as 28x28 PNGs, and as 280x280 dark-on-light drawings with a thick pen."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.http.app import create_app
from service.settings import Settings
from tests.e2e.digits import drawing, mnist_test_digits, png
from tests.service.servers import serve_in_thread

PREDICT = "/v1/models/mnist-mlp:predict"
BATCH = 250


def labels_for(http: httpx.Client, instances: list[object]) -> np.ndarray:
    found = []
    for start in range(0, len(instances), BATCH):
        response = http.post(PREDICT, json={"instances": instances[start:start + BATCH]},
                             timeout=120)
        assert response.status_code == 200, response.text
        found += [p["label"] for p in response.json()["predictions"]]
    return np.array(found)


def images(blobs: list[bytes]) -> list[object]:
    return [{"image_bytes": {"b64": base64.b64encode(blob).decode()}} for blob in blobs]


@pytest.mark.slow
def test_images_are_recognized_about_as_well_as_raw_pixels(mnist_repo: Path) -> None:
    x, y = mnist_test_digits()
    settings = Settings(repository=mnist_repo, control_enabled=False)  # type: ignore[call-arg]
    with serve_in_thread(create_app(settings)) as http:
        raw = (labels_for(http, x.tolist()) == y).mean()
        small = (labels_for(http, images([png(row) for row in x])) == y).mean()
        drawn = (labels_for(http, images([png(drawing(row)) for row in x])) == y).mean()
    print(f"\naccuracy on {len(y)} mnist-5k test digits: raw pixels {raw:.3f}, "
          f"28x28 PNG {small:.3f}, 280x280 drawing {drawn:.3f}")
    assert raw >= 0.85
    assert small >= raw - 0.01
    assert drawn >= raw - 0.03
