"""The model artifact contract, the one place both halves read it: names and versions, the files
of a version, the card (model.json) and the ONNX file's checksum. Standard library only, so the
service image (no torch) and the training image import the same rules (docs/artifact.md)."""
