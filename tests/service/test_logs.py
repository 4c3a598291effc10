"""The service's log lines: logging's own timestamps and layout, one line per record, and the
request line written directly exactly as logging would write it, or through logging whenever
anything else (a handler, a filter, another format) would see the record."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator

import pytest

from service.logs import (
    LINE_FORMAT,
    REQUEST_LOGGER,
    OneLineFormatter,
    OneLineHandler,
    log_request,
    request_logger,
)

NOW = 1_764_700_000.125  # exact in binary: its milliseconds are 125
STAMP = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_764_700_000)) + ",125"
MESSAGE = "POST /v2/models/mnist-mlp/infer 200 0.3ms model=mnist-mlp version=1 request_id=ab"


def record(created: float, message: str = MESSAGE) -> logging.LogRecord:
    made = logging.LogRecord(REQUEST_LOGGER, logging.INFO, __file__, 1, message, None, None)
    made.created = created
    made.msecs = int((created - int(created)) * 1000) + 0.0
    return made


@pytest.mark.parametrize("times", [
    [1_764_700_000.0, 1_764_700_000.0005, 1_764_700_000.999, 1_764_700_001.0],  # one second on
    [1_764_700_059.9994, 1_764_700_060.0001, 1_764_700_059.5],  # a minute on, and back
    [0.0, 86_399.999, 1_700_000_000.123],  # the epoch, a day's last millisecond
])
def test_timestamps_are_loggings_own(times: list[float]) -> None:
    """The per-second cache gives what logging.Formatter gives, record after record, also
    when the second changes between records or time goes back (a clock step)."""
    ours, loggings = OneLineFormatter(LINE_FORMAT), logging.Formatter(LINE_FORMAT)
    for created in times:
        assert ours.format(record(created)) == loggings.format(record(created))


def test_an_explicit_date_format_is_honoured() -> None:
    ours = OneLineFormatter("%(asctime)s %(message)s", datefmt="%H:%M")
    stock = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M")
    assert ours.format(record(NOW)) == stock.format(record(NOW))


def test_control_characters_cannot_start_a_line() -> None:
    line = OneLineFormatter(LINE_FORMAT).format(record(0.0, "GET /a\nINFO fake\r\x1b[31m 404"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("GET /a\\nINFO fake\\r\\x1b[31m 404")


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Logging as configure_logging leaves it (one OneLineHandler on the root logger, level
    INFO), writing to a string; the clock stopped at NOW; the previous set-up put back after.

    pytest adds its own capturing handlers to the root logger when the test starts (after
    fixtures), so each test calls `only_ours()` first."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, request_logger.level, request_logger.propagate)
    stream = io.StringIO()
    root.handlers[:] = [OneLineHandler(stream)]
    root.setLevel(logging.INFO)
    request_logger.setLevel(logging.NOTSET)
    monkeypatch.setattr(time, "time", lambda: NOW)  # read by logging and by service.logs
    yield stream
    root.handlers[:], level, request_level, request_logger.propagate = saved
    root.setLevel(level)
    request_logger.setLevel(request_level)
    request_logger.handlers.clear()
    request_logger.filters.clear()


def only_ours() -> OneLineHandler:
    """Take pytest's handlers off the root logger (it removes them itself after the test)."""
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, OneLineHandler)]
    root.handlers[:] = ours
    return ours[0]


def through_logging(message: str) -> str:
    """The line logging itself writes for `message` with the same handler and clock."""
    handler = only_ours()
    stream = handler.stream
    handler.setStream(io.StringIO())
    try:
        request_logger.info("%s", message)
        return handler.stream.getvalue()
    finally:
        handler.setStream(stream)


@pytest.mark.parametrize("message", [MESSAGE, "GET /a%0A\nINFO fake\r\x1b[31m 404", "100% ok"])
def test_the_request_line_is_the_one_logging_writes(stderr: io.StringIO, message: str) -> None:
    only_ours()
    log_request(message)
    assert stderr.getvalue() == through_logging(message)
    assert re.fullmatch(rf"{re.escape(STAMP)} INFO mlp_serve.request: [^\n\r\x1b]+\n",
                        stderr.getvalue())


def test_another_handler_gets_the_record_too(stderr: io.StringIO) -> None:
    only_ours()
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logging.getLogger().addHandler(Collect())
    log_request(MESSAGE)
    assert seen == [MESSAGE]
    assert stderr.getvalue() == f"{STAMP} INFO mlp_serve.request: {MESSAGE}\n"


def test_a_handler_on_the_request_logger_that_does_not_propagate(stderr: io.StringIO) -> None:
    only_ours()
    own = io.StringIO()
    request_logger.addHandler(logging.StreamHandler(own))
    request_logger.propagate = False
    log_request(MESSAGE)
    assert (own.getvalue(), stderr.getvalue()) == (f"{MESSAGE}\n", "")


def test_filters_and_levels_are_obeyed(stderr: io.StringIO) -> None:
    handler = only_ours()
    handler.addFilter(lambda rec: "secret" not in rec.getMessage())
    log_request("GET /secret 200")
    log_request(MESSAGE)
    handler.filters.clear()
    handler.setLevel(logging.WARNING)
    log_request(MESSAGE)
    handler.setLevel(logging.NOTSET)
    request_logger.addFilter(lambda rec: False)
    log_request(MESSAGE)
    assert stderr.getvalue() == f"{STAMP} INFO mlp_serve.request: {MESSAGE}\n"


def test_another_format_is_used_as_given(stderr: io.StringIO) -> None:
    only_ours().setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    log_request(MESSAGE)
    assert stderr.getvalue() == f"INFO {MESSAGE}\n"


def test_no_record_is_made_when_nothing_else_would_see_it(stderr: io.StringIO,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of log_request: the plain set-up costs no LogRecord (~30 -> ~17 µs a line in a
    serving worker, bench/request_log.py); with a second handler there is one again."""
    only_ours()
    made: list[logging.LogRecord] = []
    make = logging.Logger.makeRecord

    def counted(self: logging.Logger, *args: object, **kwargs: object) -> logging.LogRecord:
        made.append(make(self, *args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    log_request(MESSAGE)
    assert made == []
    logging.getLogger().addHandler(logging.NullHandler())
    log_request(MESSAGE)
    assert len(made) == 1
    assert stderr.getvalue() == f"{STAMP} INFO mlp_serve.request: {MESSAGE}\n" * 2


def test_a_broken_stream_is_reported_as_logging_reports_it(stderr: io.StringIO,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (stderr closed) never reaches the request that logs: the record goes
    through logging, whose handler reports the failure its own way."""
    handler = only_ours()
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    stderr.close()
    log_request(MESSAGE)
    assert [record.getMessage() for record in failed] == [MESSAGE]
