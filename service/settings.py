"""The service's whole configuration: one pydantic-settings object (env prefix `MLP_`).

No other module reads `os.environ`; `mlp-serve` flags override the environment field by field.
"""

from __future__ import annotations

import difflib
import hmac
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from artifact.names import NAME_RULE, is_name, is_version
from service.cpus import usable_cpus

MIN_API_KEY_CHARS = 16
AUTO_WORKERS = "auto"
PLACEHOLDER_KEYS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "apikey", "api-key", "api_key",
     "replace-me", "replaceme", "your-api-key", "xxxxxxxxxxxxxxxx", "todo", "example"}
)


class Settings(BaseSettings):
    """Every knob of `mlp-serve`; a bad value refuses start-up with one message."""

    model_config = SettingsConfigDict(
        env_prefix="MLP_", extra="forbid", use_attribute_docstrings=True, frozen=True
    )

    repository: Path = Path("models")
    """Model repository folder laid out as <name>/<version>/{model.onnx,model.json}."""
    models: str = ""
    """Comma list of models to serve, each `name` or `name:version`; empty = all, latest."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 inside a container)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""
    grpc_port: int = Field(8001, ge=0, le=65535)
    """TCP port of the Open Inference Protocol's gRPC service (8001, as Triton); same host."""
    api_key: SecretStr = SecretStr("")
    """Model-control key (Bearer or X-API-Key header); prefer the env var, flags show in ps."""
    control_enabled: bool = True
    """Serve the model-control endpoints (load/unload/index); needs a strong api_key."""
    max_batch_size: int = Field(64, ge=1)
    """Most rows merged into one onnxruntime call by the dynamic batcher."""
    max_queue_delay_ms: float = Field(2.0, ge=0)
    """Under load, longest a batch waits for requests that have arrived but whose bodies are
    still being read (it never waits for requests nobody has sent)."""
    inline_max_rows: int = Field(8, ge=0)
    """A request of at most this many rows that finds its model idle (nothing computing, queued
    or arriving) runs onnxruntime on the event loop, skipping the model thread's hand-offs:
    faster for one client; 0 = always on the model thread."""
    max_queue_rows: int = Field(4096, ge=1)
    """Rows allowed to wait per model; beyond it requests get 503 with Retry-After (on arrival,
    before their body is read, once the queue is full)."""
    request_timeout_ms: float = Field(10_000, gt=0)
    """Deadline of one inference request from its arrival (body, decoding, queue, compute);
    past it the answer is 504."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest request body accepted (after decompression); larger gets 413."""
    max_rows_per_request: int = Field(1024, ge=1)
    """Most rows one inference request may carry (each image counts as one row)."""
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest encoded image (PNG/JPEG) accepted, per image; larger gets 413."""
    max_image_pixels: int = Field(4096 * 4096, ge=784)
    """Most pixels (width x height) an image may have, checked from its header before any
    decoding, so a small file cannot expand into gigabytes; more gets 413."""
    cors_origins: str = ""
    """Comma list of origins (https://app.example.com) whose pages may call the API from a
    browser, or * for any; empty = CORS off (browsers allow same-origin pages only)."""
    ort_threads: int = Field(1, ge=0)
    """onnxruntime intra-op threads per session (0 = onnxruntime decides)."""
    shutdown_grace_s: float = Field(20.0, gt=0)
    """On SIGTERM, time allowed to answer queued and in-flight requests before exiting."""
    keep_alive_s: int = Field(75, ge=1)
    """Seconds an idle keep-alive connection stays open. Keep it above clients' and load
    balancers' idle expiry (httpx 5 s, AWS ALB 60 s): a server that closes first races a client
    reusing the connection, and that request fails."""
    header_timeout_s: float = Field(10.0, gt=0)
    """Longest a client may take to send a request's headers (counted from its first byte,
    or from connecting for the first request); slower gets 408 and the connection closed."""
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request head (request line and headers) accepted; larger gets 431."""
    max_connections: int = Field(1000, ge=1)
    """Open connections per worker (lowered to fit `ulimit -n`); past it the connection idle
    the longest is closed to make room, or the new one if none is idle."""
    worker_stall_s: float = Field(10.0, gt=0)
    """With --workers: a worker whose event loop has not reported for this long (stopped,
    wedged) is killed and handled as a dead worker."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM, time to keep answering 503 (not ready) before closing the listener."""
    log_level: str = Field("info", pattern="^(debug|info|warning|error|critical)$")
    """Log level: debug, info, warning, error or critical."""
    workers: int = Field(AUTO_WORKERS, ge=1, le=64)  # type: ignore[assignment]
    """Worker processes serving the port together (SO_REUSEPORT): a number, or auto (the
    default) = the CPUs this process may use (affinity mask and cgroup CPU quota, so a 1-CPU
    container runs one), one when a port is 0. One Python process tops out at one core.
    Model control changes all workers together."""
    cpu_pinning: str = Field("auto", pattern="^(auto|on|off)$")
    """Pin worker i (its event loop and model thread) to the i-th CPU it may use: on, off, or
    auto = on when there is one worker per usable CPU (the service owns the machine)."""

    @field_validator("log_level", "cpu_pinning", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        """`--log-level INFO` as well as info: the names, not their spelling, matter."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("models")
    @classmethod
    def _models_parse(cls, value: str) -> str:
        """Refuse a bad MLP_MODELS at start-up rather than at first use."""
        parse_model_selection(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _resolve_auto_workers(cls, data: Any) -> Any:
        """workers=auto (or not set) becomes a number here, so the rest of the service only
        ever sees how many processes to run."""
        if isinstance(data, dict):
            workers = data.get("workers", AUTO_WORKERS)
            if isinstance(workers, str) and workers.strip().lower() == AUTO_WORKERS:
                # several workers need fixed ports and Linux's SO_REUSEPORT balancing
                shared = sys.platform == "linux" and all(
                    str(data.get(key, "")).strip() != "0" for key in ("port", "grpc_port"))
                data = {**data, "workers": usable_cpus() if shared else 1}
        return data

    @field_validator("cors_origins")
    @classmethod
    def _origins_parse(cls, value: str) -> str:
        """Refuse an origin a browser would never send (a path, no scheme) at start-up."""
        parse_origins(value)
        return value

    @model_validator(mode="after")
    def _workers_share_a_fixed_port(self) -> Settings:
        """Every worker binds the same ports; with 0 each would get a different one."""
        for name, port in (("port", self.port), ("grpc_port", self.grpc_port)):
            if self.workers > 1 and port == 0:
                raise ValueError(
                    f"several workers share one port, so it must be fixed: set "
                    f"--{name.replace('_', '-')} (MLP_{name.upper()}) to a port number, not 0"
                )
        return self

    @model_validator(mode="after")
    def _two_ports(self) -> Settings:
        """HTTP and gRPC cannot share a port."""
        if self.port == self.grpc_port != 0:
            raise ValueError(f"port and grpc_port are both {self.port}; HTTP and gRPC need "
                             "two ports (MLP_PORT, MLP_GRPC_PORT)")
        return self

    @model_validator(mode="after")
    def _strong_key_when_control_enabled(self) -> Settings:
        """Model control changes what is served, so it never runs behind a guessable key."""
        key = self.api_key.get_secret_value()
        if self.control_enabled and (
            len(key) < MIN_API_KEY_CHARS or key.strip().lower() in PLACEHOLDER_KEYS
        ):
            raise ValueError(
                f"MLP_API_KEY must be a random string of at least {MIN_API_KEY_CHARS} characters "
                "when model control is enabled (got "
                + ("nothing" if not key else f"{len(key)} characters or a placeholder")
                + "); set one, e.g. MLP_API_KEY=$(openssl rand -hex 24), "
                "or disable control with MLP_CONTROL_ENABLED=false / --no-control"
            )
        return self

    def accepts_api_key(self, authorization: str, x_api_key: str) -> bool:
        """Whether `Authorization: Bearer <key>` or `X-API-Key: <key>` (HTTP headers or gRPC
        metadata) carries the server's key; always False when no key is set."""
        expected = self.api_key.get_secret_value().encode()
        scheme, _, token = authorization.partition(" ")
        offered = [x_api_key]
        if scheme.lower() == "bearer":
            offered.append(token.strip())
        return bool(expected) and any(hmac.compare_digest(candidate.encode(), expected)
                                      for candidate in offered if candidate)

    def origins(self) -> list[str]:
        """`cors_origins` as a list (empty: CORS off)."""
        return parse_origins(self.cors_origins)

    def model_selection(self) -> dict[str, int | None]:
        """`models` as {name: pinned version, or None for the latest on disk}."""
        return parse_model_selection(self.models)


def parse_model_selection(text: str) -> dict[str, int | None]:
    """Parse "a,b:2" into {"a": None, "b": 2}; names and versions as the repository allows."""
    selection: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, version = item.partition(":")
        if not is_name(name):
            raise ValueError(f"MLP_MODELS entry {item!r}: name must match {NAME_RULE}")
        if version and not is_version(version):
            raise ValueError(f"MLP_MODELS entry {item!r}: version must be a positive integer")
        selection[name] = int(version) if version else None
    return selection


# MLP_* names in the environment that are not settings, yet not typos: docker-compose.yml's host
# port (read by compose), and the variables Kubernetes injects for a Service whose name starts
# with "mlp-" (mlp-serve -> MLP_SERVE_SERVICE_HOST, MLP_SERVE_PORT_8000_TCP_ADDR, ...).
NOT_SETTINGS = frozenset({"MLP_PUBLISH_PORT"})
SERVICE_LINK = re.compile(
    r"MLP_[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)"
    r"(_PROTO|_PORT|_ADDR)?)?)"
)


def unknown_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """A message for the first MLP_* variable that is no setting (a typo like MLP_WORKER is
    otherwise ignored in silence), naming the closest setting; None when all are known."""
    known = {f"MLP_{name.upper()}" for name in Settings.model_fields}
    for key in sorted(os.environ if environ is None else environ):
        name = key.upper()
        if (not name.startswith("MLP_") or name in known or name in NOT_SETTINGS
                or SERVICE_LINK.fullmatch(name)):
            continue
        guess = difflib.get_close_matches(name[4:].lower(), list(Settings.model_fields), n=1,
                                          cutoff=0.6)  # without the shared prefix
        hint = f"; did you mean MLP_{guess[0].upper()}?" if guess else ""
        return (f"unknown environment variable {key}{hint} (every MLP_* variable is a setting; "
                "mlp-serve --help lists them)")
    return None


ORIGIN_PATTERN = re.compile(r"https?://[^/\s,]+")


def parse_origins(text: str) -> list[str]:
    """Parse "https://a.example, http://localhost:5173" (or "*") into a list of origins."""
    origins = [part.strip() for part in text.split(",") if part.strip()]
    for origin in origins:
        if origin != "*" and not ORIGIN_PATTERN.fullmatch(origin):
            raise ValueError(f"MLP_CORS_ORIGINS entry {origin!r}: expected * or an origin like "
                             "https://app.example.com (scheme, host, optional port; no path)")
    return origins
