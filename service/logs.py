"""The service's log lines: one line per record, and a cheap way to write the request line.

Every request, HTTP or gRPC, logs one INFO line on `mlp_serve.request`. Through `logging` that
line cost ~30 µs of CPU in a worker serving one-row requests, 15% of the app's own CPU per request
(bench/request_log.py: the record, the formatter's machinery, the handler chain). `log_request`
writes the very same line straight to the stream of the handler `configure_logging` installs,
for ~17 µs (8 of them the write and flush), whenever nothing else would see the record: no other
handler on the way, no filter, our format. Anything else -- a handler added by the user or by
pytest's caplog, a filter, another format -- and the line goes through `logging` as any record
does.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_LOGGER = "mlp_serve.request"
request_logger = logging.getLogger(REQUEST_LOGGER)

# C0 controls, DEL and C1 controls (U+0085 NEL is a line break to some log readers too).
CONTROL_CHARACTERS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
CONTROL_CHARACTERS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (a newline as \\n), so
    nothing a client sends (a path with %0A, a model name) can start a fake log line or
    colour a terminal."""
    return text.translate(CONTROL_CHARACTERS) if not text.isprintable() else text


class OneLineFormatter(logging.Formatter):
    """A Formatter whose messages never span lines: control characters in the message are
    escaped (a traceback, when a record carries one, still follows on its own lines).

    Its timestamps are logging's own ("2026-12-02 16:31:28,327"), with the part up to the
    second formatted once per second: strftime was 5 of the ~30 µs the request line cost."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._second: tuple[int, str] = (-1, "")

    def stamp(self, created: float) -> str:
        """`created` (time.time()) as logging's default asctime."""
        second = int(created)
        cached = self._second  # one tuple: another thread sees the old pair or the new one
        if cached[0] != second:
            cached = (second, time.strftime(self.default_time_format, self.converter(second)))
            self._second = cached
        return f"{cached[1]},{int((created - second) * 1000):03d}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class OneLineHandler(logging.StreamHandler):
    """The handler `configure_logging` puts on the root logger: LINE_FORMAT, one line each."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(OneLineFormatter(LINE_FORMAT))


def log_request(message: str) -> None:
    """Log `message` at INFO on mlp_serve.request (callers check
    `request_logger.isEnabledFor(logging.INFO)` first, as they would before building it)."""
    handler = _sole_handler()
    if handler is None:
        request_logger.info("%s", message)
        return
    formatter: OneLineFormatter = handler.formatter  # type: ignore[assignment]
    line = f"{formatter.stamp(time.time())} INFO {REQUEST_LOGGER}: {escape_controls(message)}\n"
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.stream.flush()
        return
    except Exception:  # a closed or broken stream: let logging report it its usual way
        pass
    finally:
        handler.release()
    request_logger.info("%s", message)


def _sole_handler() -> OneLineHandler | None:
    """The one handler that would write a request record, if writing the line directly gives
    exactly what logging would write; else None."""
    if request_logger.filters or request_logger.disabled:
        return None
    found: logging.Handler | None = None
    logger: logging.Logger | None = request_logger
    while logger is not None:
        for handler in logger.handlers:
            if found is not None or handler.level > logging.INFO:
                return None  # a second handler, or one that would drop the record
            found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    if (type(found) is not OneLineHandler or found.filters or found.terminator != "\n"
            or type(found.formatter) is not OneLineFormatter
            or found.formatter._fmt != LINE_FORMAT or found.formatter.datefmt is not None):
        return None
    return found
