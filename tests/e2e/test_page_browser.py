"""The drawing page in a real headless browser (Debian's chromium driven by Playwright): draw a
real test digit with mouse strokes, upload a PNG, and read the label the page shows.

Screenshots are test artifacts: written under pytest's tmp dir and copied to
test-artifacts/page/ at the repository root (git-ignored).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.http.app import create_app
from service.settings import Settings
from tests.e2e.digits import drawing, mnist_test_digits, png, strokes
from tests.service.servers import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "page"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 60_000  # generous: the machine may be busy

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium: apt-get install chromium (make test installs it as "
                "root)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(mnist_repo: Path) -> Iterator[httpx.Client]:
    settings = Settings(repository=mnist_repo, control_enabled=False)  # type: ignore[call-arg]
    with serve_in_thread(create_app(settings)) as http:
        yield http


@pytest.fixture(scope="module")
def browser_page(server: httpx.Client) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.set_default_timeout(WAIT_MS)
            page.goto(str(server.base_url) + "/")
            page.wait_for_selector("body[data-ready='1']")
            yield page
        finally:
            browser.close()


def confident_digit(server: httpx.Client, label: int) -> np.ndarray:
    """A real test digit of `label` that the served model recognizes surely as a drawing
    (so the test checks the page, not the model's few mistakes)."""
    x, y = mnist_test_digits()
    for row in x[y == label][:40]:
        b64 = base64.b64encode(png(drawing(row))).decode()
        answer = server.post("/v1/models/mnist-mlp:predict",
                             json={"instances": [{"image_bytes": {"b64": b64}}]}).json()
        prediction = answer["predictions"][0]
        if prediction["label"] == label and max(prediction["probabilities"]) > 0.98:
            return row
    raise AssertionError(f"no test digit {label} is recognized surely as a drawing")


def screenshot(page: object, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def shown_label(page: object, expected: int) -> str:
    page.wait_for_function(  # type: ignore[attr-defined]
        "expected => document.getElementById('label').textContent === expected "
        "&& !document.body.dataset.busy", arg=str(expected))
    return page.inner_text("#label")  # type: ignore[attr-defined,no-any-return]


def test_draw_a_real_digit_with_the_mouse(browser_page: object, server: httpx.Client,
                                          tmp_path: Path) -> None:
    page = browser_page
    digit = confident_digit(server, 3)
    assert page.inner_text("#model") == "mnist-mlp"  # type: ignore[attr-defined]
    box = page.locator("#pad").bounding_box()  # type: ignore[attr-defined]
    scale = box["width"] / 280  # canvas pixels -> CSS pixels (1 unless the layout changes)
    mouse = page.mouse  # type: ignore[attr-defined]
    for (x0, y0), (x1, y1) in strokes(digit):
        mouse.move(box["x"] + x0 * scale, box["y"] + y0 * scale)
        mouse.down()
        mouse.move(box["x"] + x1 * scale, box["y"] + y1 * scale, steps=3)
        mouse.up()
    assert shown_label(page, 3) == "3"
    model_input = page.evaluate(  # type: ignore[attr-defined]
        "() => Array.from(document.getElementById('model-input').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data).filter((_, i) => i % 4 === 0)")
    assert max(model_input) == 255 and sum(v > 0 for v in model_input) > 40  # the 28x28 input
    bars = page.locator("#bars .bar").count()  # type: ignore[attr-defined]
    assert bars == 10
    screenshot(page, tmp_path, "drawn-3.png")
    page.click("#clear")  # type: ignore[attr-defined]
    assert page.inner_text("#label") == ""  # type: ignore[attr-defined]


def test_upload_a_png(browser_page: object, server: httpx.Client, tmp_path: Path) -> None:
    page = browser_page
    row = confident_digit(server, 7)
    path = tmp_path / "seven.png"
    path.write_bytes(png(row))  # a 28x28 MNIST digit, light on dark
    page.set_input_files("#file", str(path))  # type: ignore[attr-defined]
    assert shown_label(page, 7) == "7"
    screenshot(page, tmp_path, "uploaded-7.png")
