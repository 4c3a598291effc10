"""`mlp-serve --workers N`: N worker processes serve one port, so the service uses every core.

One Python event loop tops out at one core. Each worker is a fresh interpreter (multiprocessing
"spawn") running the same app and `DrainingServer` as a single-process `mlp-serve`, on its own
socket bound with SO_REUSEPORT; the kernel places each new connection by a hash, and a worker
holding more connections than another hands a new one over (service/http/spread.py).

The supervisor starts worker 0 alone, so a bad repository fails once with one line, then the
others pinned to the versions worker 0 loaded (a version published meanwhile cannot split the
fleet). Each worker has a duplex pipe to the supervisor: its ready report, and model control,
which the supervisor relays to every worker one command at a time (service/models/fleet.py).
SIGTERM/SIGINT are forwarded: each worker drains as a single process does. A worker that dies
stops the fleet with a non-zero exit; restarting is the orchestrator's job, never done silently
here. Metrics use prometheus_client's multiprocess mode in a folder the supervisor owns, so a
scrape of any worker reports the whole fleet.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from fastapi import FastAPI
from prometheus_client.multiprocess import mark_process_dead

from service.http.app import create_app, ready_message
from service.http.spread import Spread, SpreadPlan
from service.models.fleet import (
    Applied,
    CommandRelay,
    FleetLink,
    FleetReady,
    FleetWorker,
    Heartbeat,
    Ready,
    Submit,
)
from service.run.affinity import pin_to_cpu
from service.run.server import (
    STARTUP_FAILED_EXIT,
    DrainingServer,
    configure_logging,
    listen_socket,
    serve_config,
)
from service.settings import Settings

logger = logging.getLogger("mlp_serve")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it
PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.1  # how often the supervisor looks at signals while it waits
EXIT_MARGIN_S = 5.0  # beyond shutdown_grace_s, for interpreter and onnxruntime teardown
FAILED_EXIT = 1


def listen_error(host: str, port: int, flag: str, error: OSError) -> str:
    """The one start-up line for a port we cannot have."""
    return (f"cannot start: cannot listen on {host}:{port}: {error.strerror}; "
            f"stop what listens there or choose another {flag}")


def exit_with_supervisor(supervisor_pid: int) -> None:
    """Have the kernel send SIGTERM (drain and exit) to this worker when the supervisor dies,
    even by SIGKILL, so no worker is left orphaned holding the port."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != supervisor_pid:  # it died before prctl took effect
        raise SystemExit(FAILED_EXIT)


def served_versions(app: FastAPI) -> dict[str, int]:
    """{model name: version} the app serves now."""
    registry = app.state.registry
    return {name: registry.get(name).model.version for name in registry.names()}


def run_worker(index: int, settings: Settings, metrics_dir: Path, supervisor_pid: int,
               pipe: Connection, plan: SpreadPlan) -> None:
    """Worker `index`: the single-process server on a SO_REUSEPORT socket; reports
    {model: version} on `pipe` once it serves, and takes model-control commands from it. Exits
    non-zero (having logged why) on a failed start."""
    pin_to_cpu(index, settings)  # first: the threads started later inherit it
    os.setpgrp()  # Ctrl-C in a terminal signals the supervisor only, which forwards it once
    exit_with_supervisor(supervisor_pid)
    link = FleetLink(pipe, f"worker {index} (pid {os.getpid()})")
    app = create_app(settings, FleetWorker(link, metrics_dir))
    try:
        spread: Spread | None = Spread(plan, index)
    except OSError as error:  # no Unix socket for handovers: serve without them
        logger.warning("worker %d: connections are not evened out over the workers: %s",
                       index, error)
        spread = None
    config = serve_config(app, settings, spread)
    try:
        sock = listen_socket(settings.host, settings.port, reuse_port=True)
    except OSError as error:
        logger.error(listen_error(settings.host, settings.port, "--port (MLP_PORT)", error))
        raise SystemExit(STARTUP_FAILED_EXIT) from None
    server = DrainingServer(config, settings, app.state.lifecycle,
                            on_started=lambda: link.report_ready(served_versions(app)),
                            spread=spread)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILED_EXIT)


@dataclass
class Worker:
    """One spawned worker, the supervisor's end of its pipe (None once it closed), and what it
    serves once ready."""

    index: int
    process: BaseProcess
    pipe: Connection | None
    served: dict[str, int] | None = None
    last_heard: float = 0.0  # time.monotonic() of its last message

    def describe(self) -> str:
        """How log lines name it."""
        return f"worker {self.index} (pid {self.process.pid})"

    def send(self, message: object) -> bool:
        """Send `message` to the worker; False if it is gone."""
        if self.pipe is None:
            return False
        try:
            self.pipe.send(message)
        except OSError:
            return False
        return True


class Supervisor:
    """Start, watch and stop the workers of one `mlp-serve --workers N`."""

    def __init__(self, settings: Settings, metrics_dir: Path) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")
        self.spread_plan = SpreadPlan.create(self.context, settings.workers)
        self.workers: list[Worker] = []
        self.relay = CommandRelay(self.workers)
        self.signals = 0  # SIGTERM/SIGINT received; forwarded from the main loop

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Count it; the first one drains the workers, a second one makes them exit at once."""
        self.signals += 1

    def spawn(self, index: int, settings: Settings) -> None:
        """Start worker `index` in a fresh interpreter with its own duplex pipe."""
        ours, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=run_worker, name=f"mlp-serve-worker-{index}", daemon=False,
            args=(index, settings, self.metrics_dir, os.getpid(), theirs, self.spread_plan))
        process.start()
        theirs.close()  # the worker holds the only other end: its exit shows as EOF here
        self.workers.append(Worker(index, process, ours))

    def watch(self, done: Callable[[], bool]) -> Worker | None:
        """Take messages until `done()` or a signal; the first worker that exits (a serving
        worker silent for worker_stall_s is killed first: stopped or wedged, it would keep
        receiving connections it never answers)."""
        while not done() and not self.signals:
            exited = self.pump()
            if exited is not None:
                return exited
            self.kill_stalled(time.monotonic())
        return None

    def kill_stalled(self, now: float) -> None:
        """SIGKILL each serving worker whose heartbeat stopped; its exit then stops the fleet
        as any worker's death does."""
        for worker in self.workers:
            silent = now - worker.last_heard
            if worker.served is not None and worker.process.exitcode is None and \
                    silent > self.settings.worker_stall_s:
                logger.error("%s sent no heartbeat for %.1f s (stopped or its event loop is "
                             "stuck; MLP_WORKER_STALL_S=%g); killing it", worker.describe(),
                             silent, self.settings.worker_stall_s)
                worker.process.kill()
                worker.last_heard = now

    def pump(self, running: list[Worker] | None = None) -> Worker | None:
        """Wait up to POLL_S for messages or the exit of a worker in `running` (default: all),
        handle the messages, give up on commands past their deadline; the first worker that
        exited, if any."""
        running = self.workers if running is None else running
        events = set(wait([*(w.pipe for w in self.workers if w.pipe is not None),
                           *(w.process.sentinel for w in running)], timeout=POLL_S))
        for worker in self.workers:
            if worker.pipe is not None and worker.pipe in events:
                self.receive(worker)
        self.relay.tick(time.monotonic())
        return next((w for w in running if w.process.sentinel in events), None)

    def receive(self, worker: Worker) -> None:
        """Every message waiting on `worker`'s pipe; at EOF (it exited) close the pipe."""
        assert worker.pipe is not None
        try:
            while worker.pipe.poll():
                message = worker.pipe.recv()
                worker.last_heard = time.monotonic()
                if isinstance(message, Heartbeat):
                    continue
                if isinstance(message, Ready):
                    worker.served = message.served
                elif isinstance(message, Submit):
                    self.relay.submit(worker, message.command)
                elif isinstance(message, Applied):
                    self.relay.applied(worker, message.command_id, message.outcome)
        except (EOFError, OSError):  # it exited: its sentinel tells the main loop next
            worker.pipe.close()
            worker.pipe = None
            self.relay.lost(worker)

    def run(self) -> int:
        """Start the fleet, serve until a signal or a worker's death, then stop; exit code."""
        self.spawn(0, self.settings)
        failed = self.watch(lambda: self.workers[0].served is not None)
        if failed is None and not self.signals:
            served = self.workers[0].served or {}
            pinned = self.settings.model_copy(
                update={"models": ",".join(f"{name}:{v}" for name, v in served.items())})
            for index in range(1, self.settings.workers):
                self.spawn(index, pinned)
            failed = self.watch(lambda: all(w.served is not None for w in self.workers))
            if failed is None and not self.signals:
                for worker in self.workers:  # health checks turn green only now
                    worker.send(FleetReady())
                pids = ", ".join(str(w.process.pid) for w in self.workers)
                logger.info(ready_message(self.settings, list(served),
                                          f"{len(self.workers)} workers (pids {pids})"))
                self.relay.open()  # every worker serves the same versions: control may run
                failed = self.watch(lambda: False)
        if failed is not None:
            self.explain(failed)
        return self.stop(failed)

    def explain(self, failed: Worker) -> None:
        """One line on a worker that exited on its own, unless it already said why (a worker
        that fails to start logs its reason and exits with a positive code)."""
        # Its sentinel turns ready when the process closes its files, which is a moment before
        # it can be reaped: until then exitcode still reads None. Wait for the real code.
        failed.process.join(EXIT_MARGIN_S)
        code = failed.process.exitcode or 0
        if failed.served is None and code > 0:
            return
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        when = "while serving" if failed.served is not None else "while starting"
        logger.error("%s %s %s; stopping the other workers", failed.describe(), how, when)

    def stop(self, failed: Worker | None) -> int:
        """SIGTERM every worker (again on each further signal), wait out the grace, and return
        0 if all drained cleanly, else the failed worker's start-up code or 1."""
        deadline = time.monotonic() + self.settings.shutdown_grace_s + EXIT_MARGIN_S
        self.relay.close()  # a command running now still finishes: the loop below relays it
        forwarded = 0
        alive = list(self.workers)
        while alive:
            for worker in [w for w in alive if w.process.exitcode is not None]:
                alive.remove(worker)  # its live gauges leave the fleet's metrics
                mark_process_dead(worker.process.pid, str(self.metrics_dir))
            while alive and forwarded < max(self.signals, 1):
                forwarded += 1
                for worker in alive:
                    worker.process.terminate()  # SIGTERM: drain (a second one: exit at once)
            if alive and time.monotonic() > deadline:
                logger.error("%s did not exit within the grace; killing",
                             ", ".join(w.describe() for w in alive))
                for worker in alive:
                    worker.process.kill()
                    worker.process.join()
                break
            self.pump(alive)
        if failed is not None:
            code = failed.process.exitcode or 0
            return code if code > 0 and failed.served is None else FAILED_EXIT
        # A worker SIGTERMed before it installed its handlers exits by the signal: still clean.
        clean = (0, -signal.SIGTERM)
        return 0 if all(w.process.exitcode in clean for w in self.workers) else FAILED_EXIT


def supervise(settings: Settings) -> int:
    """Run `settings.workers` workers until a signal or a worker's death; the exit code."""
    configure_logging(settings.log_level)
    if not sys.platform.startswith("linux"):
        logger.error("cannot start: --workers above 1 needs Linux (SO_REUSEPORT balancing and "
                     "PR_SET_PDEATHSIG); run one worker per container instead")
        return FAILED_EXIT
    for port, flag in ((settings.port, "--port (MLP_PORT)"),
                       (settings.grpc_port, "--grpc-port (MLP_GRPC_PORT)")):
        try:  # without SO_REUSEPORT: fails if anything, even another fleet, holds the port
            listen_socket(settings.host, port, reuse_port=False).close()
        except OSError as error:
            logger.error(listen_error(settings.host, port, flag, error))
            return FAILED_EXIT
    with tempfile.TemporaryDirectory(prefix="mlp-serve-metrics-") as folder:
        # Before spawning: each fresh worker's prometheus_client picks its file-backed values
        # at import time from this variable.
        os.environ[MULTIPROC_ENV] = folder
        supervisor = Supervisor(settings, Path(folder))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, supervisor.on_signal)
        return supervisor.run()
