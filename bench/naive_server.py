"""The obvious FastAPI endpoint, as a baseline for bench/serve_load.py (not part of the product).

One pydantic model for the V2 JSON body, one `session.run` per request inside `async def`, the
response built from `.tolist()`; uvicorn with its defaults and one worker. This is what most
people write first; serve_load.py measures mlp-serve against it on the same model file.

    .venv/bin/python bench/naive_server.py MODEL.onnx PORT [WORKERS]

WORKERS > 1 runs uvicorn's own multi-process mode, for comparisons at equal process counts.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


def build_app(model_path: str) -> FastAPI:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{name}/infer")
    async def predict(name: str, req: InferRequest) -> dict[str, Any]:
        tensor = req.inputs[0]
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
        results = session.run(names, {tensor.name: x})
        return {
            "model_name": name,
            "outputs": [
                {"name": n, "shape": list(r.shape), "datatype": str(r.dtype),
                 "data": r.ravel().tolist()}
                for n, r in zip(names, results, strict=True)
            ],
        }

    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's worker processes (they import it by name)."""
    return build_app(os.environ["NAIVE_MODEL"])


if __name__ == "__main__":
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    if workers == 1:
        uvicorn.run(build_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                    log_level="warning")
    else:
        os.environ["NAIVE_MODEL"] = sys.argv[1]
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        uvicorn.run("naive_server:app_from_env", factory=True, workers=workers,
                    host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
