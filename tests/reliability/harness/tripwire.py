"""A FIFO tripwire: a named pipe placed where no process should ever look. Opening a FIFO for
reading blocks until a writer appears, so a background thread that keeps trying a non-blocking
write-open learns, deterministically, whether anyone opened it -- then unblocks them."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path


class Tripwire:
    """Context manager over FIFOs at `paths`; `tripped` lists those some process opened."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.tripped: list[Path] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(path)

    def _probe(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no reader: nobody opened it
                return False
            raise
        try:  # a reader is blocked in open(): let it go with junk
            os.write(fd, b"tripwire\n")
        finally:
            os.close(fd)
        return True

    def _watch(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                if self._probe(path):
                    self.tripped.append(path)
            time.sleep(0.005)

    def __enter__(self) -> Tripwire:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for path in self.paths:  # a last look, after the requests finished
            if self._probe(path):
                self.tripped.append(path)
