"""Offline side: data -> regularized MLP -> verified ONNX model in the repository."""

import os

# onnxruntime (export check, `mlp-train evaluate`) would otherwise create ~/.cache/Microsoft/...
# with a device id and telemetry events at import; the variable must precede that import.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
