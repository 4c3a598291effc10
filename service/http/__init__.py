"""The HTTP side: the FastAPI app, the V1/V2/control routes and the fast path for inference."""
