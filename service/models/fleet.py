"""Model control across the workers of `mlp-serve --workers N`: every worker changes together.

A control request reaches one worker (the origin). It resolves the version once (the latest on
disk unless the request names one, so every worker loads the same number even if training
publishes another meanwhile), sends the command to the supervisor over its duplex pipe and
awaits the reply without blocking its event loop. The supervisor (`CommandRelay`) runs one
command at a time, so two requests on two workers cannot interleave: it sends the command to
every worker, the origin included, collects each one's outcome (or notes that it exited or did
not answer in time) and replies to the origin. Each worker applies the command with its own
ModelRegistry exactly as a single process does: verify, then swap. A version that fails
verification fails it on every worker, so all refuse and all keep serving what they served.

Messages on the pipe are small pickled dataclasses: worker -> supervisor `Ready`, `Submit`,
`Applied`, `Heartbeat`; supervisor -> worker `Apply`, `Done`, `FleetReady`. A worker reports
ready to its health checks only on `FleetReady`, once every worker listens; its event loop sends
a `Heartbeat` every HEARTBEAT_S, so the supervisor can tell a stopped or wedged worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal, Protocol

from service.errors import ServiceError, ServiceUnavailable
from service.metrics import Metrics
from service.models.dataplane import Lifecycle
from service.models.registry import Changed, ModelRegistry

logger = logging.getLogger("mlp_serve")
COMMAND_TIMEOUT_S = 120.0  # longest the supervisor waits for one worker to apply a command
HEARTBEAT_S = 0.5  # how often a worker's event loop says it still runs
Op = Literal["load", "unload"]


@dataclass(frozen=True, slots=True)
class Command:
    """Load `name` at `version` (always resolved), or unload it (version None)."""

    id: str
    op: Op
    name: str
    version: int | None = None

    def describe(self) -> str:
        """How messages name it: "load of model 'a' version 3"."""
        version = f" version {self.version}" if self.version is not None else ""
        return f"{self.op} of model {self.name!r}{version}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one worker applied a command: the version it loaded or unloaded, or the error
    (status and message) a single process would have answered."""

    worker: str
    version: int | None = None
    status: int = 200
    error: str = ""

    def describe(self) -> str:
        """One worker's part of a split report."""
        if not self.error:
            return f"{self.worker}: done (version {self.version})"
        return f"{self.worker}: {self.status} {self.error}"


@dataclass(frozen=True, slots=True)
class Ready:
    """Worker -> supervisor: it serves these {model: version} and listens."""

    served: dict[str, int]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Worker -> supervisor: its event loop still runs."""


@dataclass(frozen=True, slots=True)
class FleetReady:
    """Supervisor -> every worker: all workers listen; report ready to health checks."""


@dataclass(frozen=True, slots=True)
class Submit:
    """Worker -> supervisor: a control request reached this worker; apply it fleet-wide."""

    command: Command


@dataclass(frozen=True, slots=True)
class Applied:
    """Worker -> supervisor: this worker's outcome of the command `command_id`."""

    command_id: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Apply:
    """Supervisor -> every worker: apply this command to your models."""

    command: Command


@dataclass(frozen=True, slots=True)
class Done:
    """Supervisor -> origin: every worker's outcome, or why nothing was applied (`refused`)."""

    command_id: str
    outcomes: tuple[Outcome, ...] = ()
    refused: str = ""


async def apply(registry: ModelRegistry, command: Command, worker: str) -> Outcome:
    """Apply `command` to this worker's models as single-process control does."""
    try:
        if command.op == "load":
            model = await registry.load(command.name, command.version)
        else:
            model = await registry.unload(command.name)
    except ServiceError as error:
        return Outcome(worker, status=error.status_code, error=error.message)
    except Exception:
        logger.exception("%s: unexpected error in the %s", worker, command.describe())
        return Outcome(worker, status=500, error="unexpected error; see this worker's log")
    return Outcome(worker, model.version)


def verdict(command: Command, outcomes: Sequence[Outcome]) -> Changed:
    """What the fleet did: every worker succeeded (what changed), or every worker refused it
    alike with a client error (that error: nothing changed anywhere). Anything else may have
    left the workers serving different versions: a 500 that names each worker's outcome."""
    errors = {(o.status, o.error) for o in outcomes if o.error}
    if not errors and outcomes[0].version is not None:
        return Changed(command.name, outcomes[0].version)
    if len(errors) == 1 and all(o.error for o in outcomes):
        status, message = errors.pop()
        if status < 500:
            raise ServiceError(message, status)
    message = (f"the {command.describe()} did not succeed on every worker, so they may now "
               f"serve different versions: {'; '.join(o.describe() for o in outcomes)}; send "
               "the request again, or restart the service")
    logger.error(message)
    raise ServiceError(message, 500)


class FleetLink:
    """A worker's end of its duplex pipe to the supervisor: the ready report, this worker's
    control requests out (awaited on futures), the fleet's commands in (applied as tasks).

    Only the event loop's thread sends, so messages never interleave; they are a few hundred
    bytes, far below the socket buffer, so a send does not wait for the reader.
    """

    def __init__(self, pipe: Connection, worker: str) -> None:
        self.pipe = pipe
        self.worker = worker  # "worker 1 (pid 123)", as the supervisor's logs name it
        self.registry: ModelRegistry | None = None
        self.waiting: dict[str, asyncio.Future[Done]] = {}
        self.applying: set[asyncio.Task[None]] = set()
        self.listening = False
        self.lifecycle: Lifecycle | None = None
        self.beat: asyncio.TimerHandle | None = None

    def report_ready(self, served: dict[str, int]) -> None:
        """Tell the supervisor this worker serves `served` and listens."""
        self.pipe.send(Ready(served))

    def listen(self, registry: ModelRegistry, lifecycle: Lifecycle) -> None:
        """From now on apply the supervisor's commands to `registry`, send heartbeats, and set
        `lifecycle.ready` when the whole fleet listens (in the lifespan, before the worker
        reports ready)."""
        self.registry, self.lifecycle = registry, lifecycle
        asyncio.get_running_loop().add_reader(self.pipe.fileno(), self._on_readable)
        self.listening = True
        self._heartbeat()

    def _heartbeat(self) -> None:
        """Send a Heartbeat now and again in HEARTBEAT_S, from the event loop itself."""
        if not self.listening:
            return
        try:
            self.pipe.send(Heartbeat())
        except OSError:  # the supervisor is gone
            return
        self.beat = asyncio.get_running_loop().call_later(HEARTBEAT_S, self._heartbeat)

    async def close(self) -> None:
        """Stop taking commands, finish those being applied (their outcomes still go out) and
        fail requests still waiting for a reply (shutdown)."""
        self._stop_listening()
        await asyncio.gather(*self.applying)
        self._fail_waiting("the service is shutting down before model control finished; "
                           "check what each replica serves")

    async def submit(self, op: Op, name: str, version: int | None = None) -> Done:
        """Have the supervisor apply this command on every worker; its reply."""
        command = Command(uuid.uuid4().hex, op, name, version)
        future: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self.waiting[command.id] = future
        try:
            self.pipe.send(Submit(command))
            return await future
        except OSError:  # the supervisor is gone; PR_SET_PDEATHSIG is draining this worker
            raise ServiceUnavailable("the service is shutting down; model control was not "
                                     "applied") from None
        finally:
            self.waiting.pop(command.id, None)

    def _on_readable(self) -> None:
        """Take every message that arrived: commands to apply, replies to requests."""
        try:
            while self.pipe.poll():
                message = self.pipe.recv()
                if isinstance(message, Apply):
                    task = asyncio.create_task(self._apply(message.command))
                    self.applying.add(task)
                    task.add_done_callback(self.applying.discard)
                elif isinstance(message, FleetReady) and self.lifecycle is not None:
                    self.lifecycle.ready = True
                elif isinstance(message, Done):
                    future = self.waiting.get(message.command_id)
                    if future is not None and not future.done():
                        future.set_result(message)
        except (EOFError, OSError):  # the supervisor exited
            self._stop_listening()
            self._fail_waiting("the service is shutting down (its supervisor exited); model "
                               "control may not have reached every worker")

    async def _apply(self, command: Command) -> None:
        assert self.registry is not None
        outcome = await apply(self.registry, command, self.worker)
        with contextlib.suppress(OSError):  # the supervisor is gone: nobody waits for it
            self.pipe.send(Applied(command.id, outcome))

    def _stop_listening(self) -> None:
        if self.listening:
            self.listening = False
            asyncio.get_running_loop().remove_reader(self.pipe.fileno())
            if self.beat is not None:
                self.beat.cancel()

    def _fail_waiting(self, message: str) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ServiceUnavailable(message))


class FleetControl:
    """ModelControl of `--workers N`: one command, applied by every worker."""

    def __init__(self, registry: ModelRegistry, link: FleetLink) -> None:
        self.registry = registry
        self.link = link

    async def load(self, name: str, version: int | None) -> Changed:
        """Every worker verifies and swaps in the same version (the latest on disk, resolved
        here once, unless `version` names one)."""
        if version is None:
            version = await asyncio.to_thread(self.registry.repository.latest, name)
        return await self._run("load", name, version)

    async def unload(self, name: str) -> Changed:
        """Every worker stops serving `name`."""
        return await self._run("unload", name)

    async def _run(self, op: Op, name: str, version: int | None = None) -> Changed:
        done = await self.link.submit(op, name, version)
        if done.refused:
            raise ServiceUnavailable(done.refused)
        return verdict(Command(done.command_id, op, name, version), done.outcomes)


class FleetWorker:
    """The app as one worker of `mlp-serve --workers N` (create_app's role): metrics in the
    supervisor's multiprocess folder, kept fresh for scrapes of other workers; model control
    through the supervisor to every worker."""

    def __init__(self, link: FleetLink, metrics_dir: Path) -> None:
        self.link = link
        self.metrics_dir = metrics_dir
        self.refresher: asyncio.Task[None] | None = None

    def metrics(self) -> Metrics:
        """prometheus_client's multiprocess mode in the supervisor's folder."""
        return Metrics(self.metrics_dir)

    def control(self, registry: ModelRegistry) -> FleetControl:
        """Every worker changes together."""
        return FleetControl(registry, self.link)

    async def serving(self, registry: ModelRegistry, metrics: Metrics,
                      lifecycle: Lifecycle) -> None:
        """Take the supervisor's commands (ready once every worker listens: FleetReady);
        refresh the live gauges in the background."""
        self.link.listen(registry, lifecycle)
        self.refresher = asyncio.create_task(metrics.keep_gauges_fresh())

    async def stopping(self) -> None:
        """Stop the refresher; finish the commands being applied."""
        if self.refresher is not None:
            self.refresher.cancel()
        await self.link.close()


class Peer(Protocol):
    """A worker as the supervisor's relay sees it (service/run/supervisor.py's Worker)."""

    index: int

    def describe(self) -> str:
        """How messages name it."""

    def send(self, message: object) -> bool:
        """Send on its pipe; False if it is closed."""


@dataclass
class Running:
    """The command the fleet applies now, and the outcomes in so far (by worker index)."""

    origin: Peer
    command: Command
    deadline: float
    outcomes: dict[int, Outcome] = field(default_factory=dict)


class CommandRelay:
    """The supervisor's side: queue commands, run one at a time on every worker, reply.

    Commands wait until `open()` (every worker serves, pinned to the same versions) and are
    refused once `close()` is called (shutdown); the command running then still finishes.
    """

    def __init__(self, peers: Sequence[Peer], timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.peers = peers  # the fleet's workers (the list grows while they start)
        self.timeout_s = timeout_s
        self.queued: deque[tuple[Peer, Command]] = deque()
        self.running: Running | None = None
        self.state: Literal["starting", "open", "closed"] = "starting"

    def open(self) -> None:
        """Every worker serves: run what is queued."""
        self.state = "open"
        self._next()

    def close(self) -> None:
        """Shutting down: refuse what is queued and what arrives from now on."""
        self.state = "closed"
        while self.queued:
            self._refuse(*self.queued.popleft())

    def submit(self, origin: Peer, command: Command) -> None:
        """A worker received a control request."""
        if self.state == "closed":
            self._refuse(origin, command)
            return
        self.queued.append((origin, command))
        self._next()

    def applied(self, peer: Peer, command_id: str, outcome: Outcome) -> None:
        """A worker's outcome (late ones, of a command that timed out, are dropped)."""
        if self.running is not None and self.running.command.id == command_id:
            self.running.outcomes.setdefault(peer.index, outcome)
            self._finish_if_complete()

    def lost(self, peer: Peer) -> None:
        """A worker's pipe closed (it exited): it will not answer."""
        self._fill(peer, "exited before applying it")
        self._finish_if_complete()

    def tick(self, now: float) -> None:
        """Give up on workers that did not answer in time."""
        if self.running is not None and now > self.running.deadline:
            for peer in self.peers:
                self._fill(peer, f"did not apply it within {self.timeout_s:.0f} s")
            self._finish_if_complete()

    def _fill(self, peer: Peer, why: str) -> None:
        """Record that `peer` will not answer the running command (unless it already did)."""
        if self.running is not None and peer.index not in self.running.outcomes:
            self.running.outcomes[peer.index] = Outcome(peer.describe(), status=500, error=why)

    def _next(self) -> None:
        """Start the first queued command, if none runs and the relay is open."""
        while self.running is None and self.state == "open" and self.queued:
            origin, command = self.queued.popleft()
            self.running = Running(origin, command, time.monotonic() + self.timeout_s)
            for peer in self.peers:
                if not peer.send(Apply(command)):
                    self._fill(peer, "exited before applying it")
            self._reply_if_complete()

    def _finish_if_complete(self) -> None:
        self._reply_if_complete()
        self._next()

    def _reply_if_complete(self) -> None:
        running = self.running
        if running is None or len(running.outcomes) < len(self.peers):
            return
        self.running = None
        outcomes = tuple(running.outcomes[peer.index] for peer in self.peers)
        running.origin.send(Done(running.command.id, outcomes))

    def _refuse(self, origin: Peer, command: Command) -> None:
        origin.send(Done(command.id, refused="the service is shutting down; model control "
                                             "was not applied, send it to the restarted service"))
