"""models/pixels.py through the real HTTP routes: which rows count as scaled to 0..1, in every
dtype and batch size the fast check sees, and what a declared range does."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.service.conftest import MODEL, pixels

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


def v2(rows: np.ndarray, datatype: str = "FP32", **parameters: str) -> dict[str, object]:
    body: dict[str, object] = {"inputs": [{"name": "input", "shape": list(rows.shape),
                                           "datatype": datatype, "data": rows.tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "FP16"])
@pytest.mark.parametrize("count", [1, 3])
def test_the_scaled_row_is_named_in_any_batch(shared_client: httpx.Client, datatype: str,
                                              count: int) -> None:
    rows = pixels(count, seed=count)
    rows[count - 1] /= 255  # the last row only
    answer = shared_client.post(V2, json=v2(rows, datatype))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"input 'input': row {count - 1} looks scaled to "
                                             "0..1 (its brightest pixel is ")


def test_blank_rows_and_integer_pixels_pass(shared_client: httpx.Client) -> None:
    rows = pixels(3).astype(np.int64)
    rows[1] = 0  # a blank image is not a scaled one
    assert shared_client.post(V2, json=v2(rows, "INT64")).status_code == 200
    assert shared_client.post(V1, json={"instances": rows.tolist()}).status_code == 200


def test_binary_ones_are_refused_unless_declared_raw(shared_client: httpx.Client) -> None:
    """A 0/1 (binarized) image is as wrong for the model as a 0..1 one."""
    rows = (pixels(2) > 128).astype(np.int64)
    refused = shared_client.post(V1, json={"instances": rows.tolist()})
    assert refused.status_code == 400 and "row 0 looks scaled" in refused.json()["error"]
    raw = shared_client.post(V1, json={"instances": rows.tolist(), "pixel_range": "0..255"})
    assert raw.status_code == 200


def test_declared_unit_range_gives_the_raw_answer(shared_client: httpx.Client) -> None:
    rows = pixels(4, seed=7)
    raw = shared_client.post(V2, json=v2(rows)).json()
    scaled = shared_client.post(V2, json=v2(rows / 255, pixel_range="0..1")).json()
    assert scaled["outputs"][1]["data"] == raw["outputs"][1]["data"]
    np.testing.assert_allclose(scaled["outputs"][0]["data"], raw["outputs"][0]["data"],
                               atol=1e-6)


@pytest.mark.parametrize(("value", "shown"), [(3, "3"), (None, "None"), (1, "1")])
def test_a_bad_declared_range_names_both(shared_client: httpx.Client, value: object,
                                         shown: str) -> None:
    body = v2(pixels(1))
    body["parameters"] = {"pixel_range": value}
    answer = shared_client.post(V2, json=body)
    if value is None:  # JSON null: no range declared
        assert answer.status_code == 200
        return
    assert answer.json() == {"error": f"parameters.pixel_range is {shown}; expected \"0..255\" "
                             "(raw pixels, the default) or \"0..1\" (pixels divided by 255)"}
