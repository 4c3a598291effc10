"""gRPC load for bench/serve_load.py: ModelInfer requests from h2load, a C HTTP/2 client.

h2load (Debian's nghttp2-client) sends one ready-made gRPC frame (the serialized
ModelInferRequest behind gRPC's 5-byte prefix) as the body of every POST on `clients` HTTP/2
connections, one request in flight on each, as many unary gRPC clients do: it costs the shared
cores about what wrk costs the HTTP runs, where a Python gRPC client would take a core itself.
h2load only sees HTTP statuses, and gRPC reports errors in trailers, so every run is checked
against the server's own count of non-OK gRPC answers (mlp_requests_total{protocol="grpc"}).
"""

from __future__ import annotations

import http.client
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

from service.grpc import grpc_service_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def grpc_body(folder: Path, name: str, rows: np.ndarray) -> Path:
    """A file holding one gRPC frame: raw FP32 input, default outputs (tritonclient's way)."""
    message = pb.ModelInferRequest(model_name=name)
    message.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    message.raw_input_contents.append(np.ascontiguousarray(rows, "<f4").tobytes())
    data = message.SerializeToString()
    path = folder / f"grpc-{len(rows)}.body"
    path.write_bytes(b"\x00" + struct.pack(">I", len(data)) + data)
    return path


def check_grpc(target: str, body: Path) -> None:
    """One call before loading: the server must answer OK, or the numbers mean nothing."""
    import grpc  # only when gRPC runs are asked for

    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        infer(body.read_bytes()[5:], timeout=30)


def grpc_failures(http_port: int) -> float:
    """The server's count of gRPC answers other than OK so far (all workers). CANCELLED is not
    one: those are the calls h2load abandons when its time is up."""
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mlp_requests_total{") and 'protocol="grpc"' in line \
                and 'status="OK"' not in line and 'status="CANCELLED"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def load_h2load(target: str, body: Path, clients: int, duration_s: float, workdir: Path,
                http_port: int) -> dict:
    """Run h2load for `duration_s`; requests, seconds, p50/p99 ms and errors (HTTP or gRPC)."""
    log = workdir / f"h2load-{clients}-{body.stem}.log"
    log.unlink(missing_ok=True)
    failed_before = grpc_failures(http_port)
    cmd = ["h2load", "-t1", f"-c{clients}", "-m1", f"-D{duration_s:g}", "-d", str(body),
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"--log-file={log}", f"http://{target}{METHOD}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60).stdout
    durations, statuses = [], []
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")[:3]
        statuses.append(int(status))
        durations.append(int(micros))
    if not durations:
        raise SystemExit(f"h2load made no requests:\n{out}")
    every = np.sort(np.array(durations)) / 1e3
    bad_http = sum(status != 200 for status in statuses)
    failed = int(grpc_failures(http_port) - failed_before)
    return {"requests": len(durations) - bad_http - failed, "seconds": duration_s,
            "p50_ms": float(np.percentile(every, 50)), "p99_ms": float(np.percentile(every, 99)),
            "errors": bad_http + failed}


def ensure_h2load() -> bool:
    """h2load is there (installed from Debian when missing and running as root)."""
    if not shutil.which("h2load") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing nghttp2-client (h2load) from Debian ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nghttp2-client"],
                       capture_output=True)
    if not shutil.which("h2load"):
        print("h2load not found (apt-get install nghttp2-client): no gRPC runs")
        return False
    return True
