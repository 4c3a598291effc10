"""One error hierarchy; every error a client sees is `{"error": "<message>"}` with its status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error with a message for the client and the HTTP status that goes with it."""

    status_code = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class InvalidInput(ServiceError):
    """The request is malformed or its tensors do not fit the model (400)."""

    status_code = 400


class PayloadTooLarge(ServiceError):
    """The body is larger than max_body_bytes (413)."""

    status_code = 413

    def __init__(self, limit: int, received: str) -> None:
        super().__init__(
            f"request body is {received}, over the limit of {limit} bytes (MLP_MAX_BODY_BYTES); "
            "send fewer rows per request or use the binary tensor format"
        )


class UnsupportedMediaType(ServiceError):
    """The body uses a Content-Encoding we cannot decode (415)."""

    status_code = 415


class Unauthorized(ServiceError):
    """Model control without a valid API key (401)."""

    status_code = 401

    def __init__(self) -> None:
        super().__init__(
            "model control needs a valid API key: send 'Authorization: Bearer <key>' or "
            "'X-API-Key: <key>'"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ModelNotFound(ServiceError):
    """The model or version is not served (404)."""

    status_code = 404

    def __init__(self, name: str, version: int | None = None, detail: str = "") -> None:
        what = f"model {name!r}" + (f" version {version}" if version is not None else "")
        super().__init__(f"{what} is not loaded" + (f"; {detail}" if detail else ""))


class ModelLoadError(ServiceError):
    """A version on disk is missing, corrupt or does not follow the artifact contract (409)."""

    status_code = 409


class ServiceUnavailable(ServiceError):
    """Not ready, shutting down or overloaded (503, with Retry-After)."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class DeadlineExceeded(ServiceError):
    """The request's deadline passed before the model answered (504)."""

    status_code = 504


class BodyTimeout(DeadlineExceeded):
    """The client had not sent its whole body by the request's deadline (504). The rest may
    still come and is then discarded, so the connection stays usable; a client that never
    sends it is closed by the connection's own limit (service/connections.py)."""

    def __init__(self, received: int) -> None:
        super().__init__(f"the request body was not complete within the request deadline "
                         f"(received {received} bytes; MLP_REQUEST_TIMEOUT_MS)")


class StartupError(Exception):
    """The server cannot start (bad repository, a model that fails verification)."""


def describe_validation_errors(errors: list[dict[str, Any]] | Any) -> str:
    """Render pydantic/FastAPI validation errors as one line naming field, value and rule."""
    parts = []
    for error in list(errors)[:3]:
        location = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        received = _short_repr(error.get("input"))
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')} (received {received})")
    return "; ".join(parts)


def _short_repr(value: Any, limit: int = 80) -> str:
    """repr() of a received value, cut so a huge payload never floods an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
