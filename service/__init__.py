"""Online side: onnxruntime behind FastAPI, speaking Open Inference Protocol V2 and KServe V1."""

import os

# onnxruntime's telemetry is on by default: importing it creates ~/.cache/Microsoft/DeveloperTools/
# .onnxruntime/ (a device id and a queue of events). The variable must be set before the first
# import of onnxruntime, which every path into the service goes through this package for.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
