"""Offline side: data -> regularized MLP -> verified ONNX model in the repository."""
