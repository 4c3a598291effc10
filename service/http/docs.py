"""/docs without the internet, and an OpenAPI description written for the people who read it.

FastAPI's default /docs page loads Swagger UI from a CDN, so it is blank on an offline machine or
a locked-down cluster. Here the page's script and stylesheet come from the installed
`fastapi-offline` package (Swagger UI 5, which reads OpenAPI 3.1), served under /docs/assets,
as FastAPI's "self-hosting JavaScript and CSS for docs" recipe does it. `annotate` adds what the
generated schema lacks: example bodies for the V2 infer operations and the model-control key
(`securitySchemes`), so the page has an Authorize button.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

ASSETS = "/docs/assets"
CONTROL_PREFIX = "/v2/repository"
DESCRIPTION = """\
Predictions from models trained on 28x28 images (handwritten digits, Fashion-MNIST items),
over the same HTTP protocols as Triton and KServe, so their clients work unchanged:

* **Open Inference Protocol (KServe V2, Triton HTTP)**: `POST /v2/models/{name}/infer`, with
  JSON tensors or the binary tensor data extension (what `tritonclient.http` sends).
* **KServe V1**: `POST /v1/models/{name}:predict` with `{"instances": [...]}`; the answer gives
  each image's label, class name and class probabilities.

**Input**: one row of 784 raw pixels per image, values **0..255** (row-major 28x28, light ink
on dark as in MNIST), shape `[N, 784]`; `[N, 28, 28]` is accepted too. Pixels divided by 255
are refused unless the request says so: `"parameters": {"pixel_range": "0..1"}` in V2, or
`"pixel_range": "0..1"` next to `"instances"` in V1.

**Errors** are always `{"error": "..."}`: 4xx for a request to fix (naming the field, the value
and what was expected), 503 with `Retry-After` when the queue is full, 504 past the deadline.

**Model control** (`/v2/repository/...`, when the server runs with it) needs the server's API
key as `Authorization: Bearer <key>` or `X-API-Key: <key>`: use **Authorize** below.
"""


def _one(pixel: int) -> list[list[int]]:
    """A 28x28 handwritten-looking "1": a slanted two-pixel stroke on black."""
    image = [[0] * 28 for _ in range(28)]
    for row in range(5, 24):
        column = 15 - (row - 5) // 6
        image[row][column] = image[row][column - 1] = pixel
    return image


def _examples() -> dict[str, Any]:
    flat = [value for row in _one(255) for value in row]
    scaled = [[value / 255 for value in row] for row in _one(255)]
    return {
        "flat": {"summary": "one image, 784 raw pixels 0..255",
                 "value": {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                       "data": flat}]}},
        "image": {"summary": "one 28x28 image, only the label back",
                  "value": {"inputs": [{"name": "input", "shape": [1, 28, 28],
                                        "datatype": "FP32", "data": [_one(255)]}],
                            "outputs": [{"name": "label"}]}},
        "scaled": {"summary": "pixels divided by 255, said so",
                   "value": {"parameters": {"pixel_range": "0..1"},
                             "inputs": [{"name": "input", "shape": [1, 28, 28],
                                         "datatype": "FP32", "data": [scaled]}]}},
    }


def add_docs(app: FastAPI) -> None:
    """GET /docs (Swagger UI) with its assets from the installed package, not a CDN."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )


def annotate(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema plus infer examples and the control key's security schemes."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path.endswith("/infer"):
                content = operation.get("requestBody", {}).get("content", {})
                content.get("application/json", {})["examples"] = _examples()
            if path.startswith(CONTROL_PREFIX):
                operation["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "The server's API key (MLP_API_KEY) as a Bearer token."},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                         "description": "The server's API key (MLP_API_KEY) in X-API-Key."},
    }
    return schema
