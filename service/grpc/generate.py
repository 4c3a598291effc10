"""Regenerate grpc_service_pb2.py and .pyi from grpc_service.proto (needs the dev extra).

    python -m service.grpc.generate        # or: make grpc-code

protoc (grpcio-tools) writes the message classes; one line is then changed so they live in a
private descriptor pool instead of protobuf's default one. Why: tritonclient.grpc and KServe's
client register their own copies of these `inference.*` messages in the default pool, and a
second, different file with the same names there fails with "duplicate symbol" -- so without
this a test (or any program) that holds a client and the server in one process could not import
both. The gRPC stubs (`*_pb2_grpc.py`) are not generated: service/grpc/server.py registers the
handlers itself with these classes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "service/grpc/grpc_service.proto"
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = "POOL.AddSerializedFile("
POOL_LINE = "POOL = _descriptor_pool.DescriptorPool()  # private: see service/grpc/generate.py\n"


def main() -> None:
    """Regenerate the committed files in place."""
    generate(ROOT)


def generate(out: Path) -> tuple[Path, Path]:
    """Run protoc into `out` (the repository root, or a test's folder), then move the messages
    into a private pool and declare it in the stub; the two files written."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={out}",
                    f"--pyi_out={out}", PROTO], cwd=ROOT, check=True)
    code = out / "service" / "grpc" / "grpc_service_pb2.py"
    stub = code.with_suffix(".pyi")
    use_private_pool(code)
    declaration = "DESCRIPTOR: _descriptor.FileDescriptor\n"
    stub.write_text(stub.read_text().replace(
        declaration, "from google.protobuf import descriptor_pool as _descriptor_pool\n\n"
        "POOL: _descriptor_pool.DescriptorPool\n" + declaration))
    return code, stub


def use_private_pool(generated: Path) -> None:
    """Rewrite a protoc-generated *_pb2.py to register its file in its own pool, `POOL`."""
    text = generated.read_text()
    if text.count(DEFAULT_POOL) != 1:
        raise SystemExit(f"{generated}: expected one {DEFAULT_POOL!r}; protoc's output changed")
    marker = "_sym_db = _symbol_database.Default()\n"
    text = text.replace(DEFAULT_POOL, PRIVATE_POOL).replace(marker, marker + POOL_LINE)
    generated.write_text(text)


if __name__ == "__main__":
    main()
