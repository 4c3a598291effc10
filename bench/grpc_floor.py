"""The floor of a Python gRPC server here: grpc.aio answering a fixed 2-byte message, under the
same h2load load serve_load.py's gRPC runs use. Its CPU per request is what any grpc.aio
service pays before doing any work of its own (compare mlp-serve's gRPC and HTTP rows).

    .venv/bin/python bench/grpc_floor.py [--clients 64] [--duration 5] [--loop uvloop|asyncio]
                                         [--processes 2]

`--processes N` runs N such servers on one port (SO_REUSEPORT), as mlp-serve's workers do.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def serve(port: int) -> None:
    """A grpc.aio server whose ModelInfer returns the same bytes at once."""
    import grpc

    async def answer(request: bytes, context: object) -> bytes:
        return b"\x08\x01"

    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    handler = grpc.unary_unary_rpc_method_handler(answer)
    service, method = METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {method: handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--processes", type=int, default=1,
                        help="servers sharing the port (SO_REUSEPORT), like --workers")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.serve:
        if args.loop == "uvloop":
            import uvloop

            uvloop.install()
        asyncio.run(serve(args.serve))
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    children = [subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--loop",
                                  args.loop]) for _ in range(args.processes)]
    try:
        time.sleep(2)
        body = Path(f"/tmp/grpc-floor-{port}.body")
        body.write_bytes(b"\x00\x00\x00\x00\x02\x08\x01")
        processes = [psutil.Process(child.pid) for child in children]
        before = sum(sum(process.cpu_times()[:2]) for process in processes)
        out = subprocess.run(
            ["h2load", "-t1", f"-c{args.clients}", "-m1", f"-D{args.duration:g}", "-d", str(body),
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://127.0.0.1:{port}{METHOD}"], capture_output=True, text=True).stdout
        cpu_s = sum(sum(process.cpu_times()[:2]) for process in processes) - before
        body.unlink()
        done = re.search(r"(\d+) succeeded", out)
        count = int(done.group(1)) if done else 0
        print(f"grpc.aio ({args.loop}, {args.processes} process(es)), fixed answer, "
              f"{args.clients} clients: "
              f"{count / args.duration:.0f} req/s, {1e6 * cpu_s / max(count, 1):.0f} µs server "
              f"CPU per request (load average {psutil.getloadavg()[0]:.1f})")
    finally:
        for child in children:
            child.terminate()
            child.wait(30)


if __name__ == "__main__":
    main()
