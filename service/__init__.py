"""Online side: onnxruntime behind FastAPI, speaking Open Inference Protocol V2 and KServe V1."""
