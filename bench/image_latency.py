"""One client, one request at a time: an image request against the raw-pixel request it replaces.

    .venv/bin/python bench/image_latency.py [--duration 10] [--model DIR]

Starts `mlp-serve` (one worker, control off) on a free port of 127.0.0.1 over a 784-256-10
model whose card says mnist-centred (or `--model`), then runs wrk with one connection for
`--duration` seconds per request kind, all of the same real test digit: V1 JSON pixel row,
V1 raw image/png upload (28x28), V1 image_bytes JSON (28x28 PNG), V1 image_bytes of the page's
drawing (280x280 canvas sent at 112x112) with the model input returned (what the page sends),
V2 JSON pixel row, V2 binary BYTES (28x28 PNG). Prints p50/p99, the server's CPU per
request (robust on a busy machine, where latency is not) and both differences to the pixel
row, then Pillow's in-process cost per image (decode + normalize). Stops the server it
started.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import psutil
import serve_load
from PIL import Image
from serve_load import (
    Body,
    check_answer,
    free_port,
    load_wrk,
    realistic_model,
    server,
    write_version,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.images import ImageLimits, to_rows  # noqa: E402
from tests.e2e.digits import drawing, mnist_test_digits, png  # noqa: E402


def write(folder: Path, name: str, data: bytes, content_type: str,
          header_length: int | None = None) -> Body:
    path = folder / f"{name}.body"
    path.write_bytes(data)
    return Body(path, 1, content_type, header_length)


def page_drawing(row: object) -> Image.Image:
    """What the page sends: its 280x280 drawing as an RGBA canvas export scaled to 112x112."""
    return drawing(row).convert("RGBA").resize((112, 112), Image.Resampling.BILINEAR)


def bodies(folder: Path) -> list[tuple[str, str, Body]]:
    """(label, route, body) of each request kind, all of one real digit."""
    x, _ = mnist_test_digits()
    row = x[0]
    small = png(row)
    drawn = png(page_drawing(row))
    b64 = base64.b64encode(small).decode()
    blob = struct.pack("<I", len(small)) + small
    header = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}]}).encode()
    v1, v2 = "v1", "v2"
    return [
        ("V1 JSON pixel row", v1, write(folder, "v1-row", json.dumps(
            {"instances": [row.tolist()]}).encode(), "application/json")),
        (f"V1 raw image/png 28x28 ({len(small)} B)", v1,
         write(folder, "v1-png", small, "image/png")),
        ("V1 image_bytes 28x28 PNG", v1, write(folder, "v1-b64", json.dumps(
            {"instances": [{"image_bytes": {"b64": b64}}]}).encode(), "application/json")),
        (f"V1 page drawing 112x112 RGBA PNG ({len(drawn)} B) + model_input", v1,
         write(folder, "v1-page", json.dumps(
             {"instances": [{"image_bytes": {"b64": base64.b64encode(drawn).decode()}}],
              "parameters": {"return_model_input": True}}).encode(), "application/json")),
        ("V2 JSON pixel row", v2, write(folder, "v2-row", json.dumps(
            {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                         "data": row.tolist()}]}).encode(), "application/json")),
        ("V2 binary BYTES 28x28 PNG", v2, write(folder, "v2-png", header + blob,
                                                "application/octet-stream", len(header))),
    ]


def paired(port: int, routes: dict[str, str], kinds: list[tuple[str, str, Body]],
           rounds: int) -> None:
    """Each round sends every kind once, back to back on one keep-alive connection, so load
    from other processes hits all kinds alike; prints each kind's p50 and the median of its
    per-round difference to the pixel row of the same protocol."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: dict[str, list[float]] = {label: [] for label, _, _ in kinds}
    payloads = [(label, routes[route], body.path.read_bytes(), serve_load.headers_of(body))
                for label, route, body in kinds]
    for _ in range(rounds):
        for label, path, data, headers in payloads:
            started = time.perf_counter()
            connection.request("POST", path, data, headers)
            response = connection.getresponse()
            response.read()
            times[label].append((time.perf_counter() - started) * 1e3)
            if response.status != 200:
                raise SystemExit(f"{label}: HTTP {response.status}")
    connection.close()
    base = {"v1": times[kinds[0][0]], "v2": times[kinds[4][0]]}
    print(f"paired, {rounds} rounds (http.client, one connection): {'p50 ms':>7} "
          f"{'median of (kind - row) ms':>26}")
    for label, route, _ in kinds:
        delta = statistics.median(a - b for a, b in zip(times[label], base[route], strict=True))
        print(f"  {label:58} {statistics.median(times[label]):7.3f} {delta:+26.3f}")


def pillow_cost(repeat: int = 2000) -> None:
    """CPU microseconds per image in-process: decode + normalize, no HTTP."""
    x, _ = mnist_test_digits()
    limits = ImageLimits(4 << 20, 1 << 24)
    for label, blob in (("28x28 PNG", png(x[0])),
                        ("112x112 RGBA PNG", png(page_drawing(x[0]))),
                        ("280x280 RGBA PNG", png(drawing(x[0]).convert("RGBA")))):
        for method in ("mnist-centred", "resize-only"):
            count = repeat if "28x28" in label else repeat // 4
            started = time.process_time()
            for _ in range(count):
                to_rows([blob], method, limits)
            micros = (time.process_time() - started) / count * 1e6
            print(f"  {label:18} {method:14} {micros:7.0f} us CPU per image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a version folder (…/<name>/<version>)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per request kind")
    parser.add_argument("--rounds", type=int, default=2000,
                        help="rounds of the paired run (every kind once per round)")
    args = parser.parse_args()
    serve_load.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="image-latency-") as tmp:
        workdir = Path(tmp)
        version_dir = args.model
        if version_dir is None:
            version_dir = write_version(workdir / "repo", "bench-mlp", realistic_model())
            card = json.loads((version_dir / "model.json").read_text())
            card["image_normalization"] = "mnist-centred"
            (version_dir / "model.json").write_text(json.dumps(card))
        version_dir = version_dir.resolve()
        name, port = version_dir.parent.name, free_port()
        env = {**os.environ, "MLP_REPOSITORY": str(version_dir.parents[1]),
               "MLP_MODELS": f"{name}:{version_dir.name}", "MLP_PORT": str(port),
               "MLP_HOST": "127.0.0.1", "MLP_CONTROL_ENABLED": "false",
               "MLP_GRPC_PORT": str(free_port()), "MLP_LOG_LEVEL": "warning", "MLP_WORKERS": "1"}
        print(f"model: {version_dir} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}); "
              f"1 worker, 1 client, {args.duration:g} s per kind")
        routes = {"v1": f"/v1/models/{name}:predict", "v2": f"/v2/models/{name}/infer"}
        rows: list[tuple[str, dict]] = []
        cmd = [str(Path(sys.executable).parent / "mlp-serve")]
        with server(cmd, port, env, workdir / "service.log") as pid:
            process = psutil.Process(pid)
            for label, route, body in bodies(workdir):
                url = f"http://127.0.0.1:{port}{routes[route]}"
                check_answer(url, body)
                load_wrk(url, body, 1, 1.0, workdir)  # warm-up, not counted
                cpu = serve_load.cpu_seconds(process)
                stats = load_wrk(url, body, 1, args.duration, workdir)
                stats["cpu_us"] = (serve_load.cpu_seconds(process) - cpu) / stats["requests"] * 1e6
                rows.append((label, stats))
            paired(port, routes, bodies(workdir), args.rounds)
        baseline = {"v1": rows[0][1], "v2": rows[4][1]}
        print(f"{'request':58} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'p50-row':>8} "
              f"{'CPU us':>7} {'CPU-row':>8}")
        for (label, stats), (_, route, _) in zip(rows, bodies(workdir), strict=True):
            rate = stats["requests"] / stats["seconds"]
            base = baseline[route]
            print(f"{label:58} {rate:6.0f} {stats['p50_ms']:7.3f} {stats['p99_ms']:7.3f} "
                  f"{stats['p50_ms'] - base['p50_ms']:+8.3f} {stats['cpu_us']:7.0f} "
                  f"{stats['cpu_us'] - base['cpu_us']:+8.0f}")
    print("Pillow + numpy per image, in-process (decode + normalize):")
    pillow_cost()


if __name__ == "__main__":
    main()
