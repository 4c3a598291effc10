"""The floor of a one-row JSON request: uvicorn, simdjson, onnxruntime and orjson, nothing else
(not part of the product; a reference for bench/README.md).

A bare ASGI app on the V2 infer path: it reads the body, takes `inputs[0].data` as a float
buffer, runs the model with one onnxruntime thread and answers with both outputs. No checks,
no admission or deadline, no metrics, no log line, no request id. The difference between it
and mlp-serve at one client is what the service's own per-request work costs.

    .venv/bin/python bench/floor_server.py MODEL.onnx PORT
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import simdjson
import uvicorn

PIXELS = 784
HEAD = {"type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json")]}


def build_app(model_path: str) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    parser = simdjson.Parser()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # readiness, for bench/serve_load.py's wait_ready
            await send(HEAD)
            await send({"type": "http.response.body", "body": b'{"ready":true}'})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        document: Any = parser.parse(body)
        tensor = document["inputs"][0]["data"]
        rows = np.frombuffer(tensor.as_buffer(of_type="d"), np.float64).astype(np.float32)
        del tensor, document  # a reused parser's proxies must not outlive the next parse
        results = session.run(names, {"input": rows.reshape(-1, PIXELS)})
        outputs = [{"name": name, "datatype": "FP32" if array.dtype == np.float32 else "INT64",
                    "shape": list(array.shape), "data": array.ravel()}
                   for name, array in zip(names, results, strict=True)]
        answer = orjson.dumps({"model_name": "bench-mlp", "outputs": outputs},
                              option=orjson.OPT_SERIALIZE_NUMPY)
        await send(HEAD)
        await send({"type": "http.response.body", "body": answer})

    return app


if __name__ == "__main__":
    uvicorn.run(build_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]),
                log_level="warning", lifespan="off")
