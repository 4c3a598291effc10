"""Fleet-wide model control: the supervisor's relay, the verdict over outcomes, the worker's
link. The whole path over real processes is in tests/e2e/test_workers.py."""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.errors import ServiceError, ServiceUnavailable
from service.metrics import Metrics
from service.models.dataplane import Lifecycle
from service.models.fleet import (
    Applied,
    Apply,
    Command,
    CommandRelay,
    Done,
    FleetLink,
    FleetReady,
    Heartbeat,
    Outcome,
    Submit,
    verdict,
)
from service.models.registry import Changed, ModelRegistry
from service.models.repository import ModelRepository
from tests.service.conftest import MODEL, settings_for

LOAD_3 = Command("c1", "load", MODEL, 3)
CORRUPT = "model 'mnist-mlp' version 3 (...): sha256 of model.onnx is ..."


@dataclass
class FakeWorker:
    """A relay peer that records what it was sent; `gone` makes sends fail."""

    index: int
    sent: list[object] = field(default_factory=list)
    gone: bool = False

    def describe(self) -> str:
        return f"worker {self.index} (pid {100 + self.index})"

    def send(self, message: object) -> bool:
        if self.gone:
            return False
        self.sent.append(message)
        return True


def fleet_of(count: int, timeout_s: float = 120.0) -> tuple[list[FakeWorker], CommandRelay]:
    workers = [FakeWorker(i) for i in range(count)]
    return workers, CommandRelay(workers, timeout_s)


def test_all_workers_done_is_what_changed() -> None:
    outcomes = [Outcome("worker 0 (pid 1)", 3), Outcome("worker 1 (pid 2)", 3)]
    assert verdict(LOAD_3, outcomes) == Changed(MODEL, 3)


def test_a_refusal_by_every_worker_is_that_refusal() -> None:
    outcomes = [Outcome(f"worker {i} (pid {i})", status=409, error=CORRUPT) for i in range(2)]
    with pytest.raises(ServiceError) as raised:
        verdict(LOAD_3, outcomes)
    assert (raised.value.status_code, raised.value.message) == (409, CORRUPT)


@pytest.mark.parametrize("second", [
    Outcome("worker 1 (pid 2)", status=409, error=CORRUPT),
    Outcome("worker 1 (pid 2)", status=500, error="did not apply it within 120 s"),
])
def test_workers_that_disagree_are_a_500_naming_each(second: Outcome,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    outcomes = [Outcome("worker 0 (pid 1)", 3), second]
    with pytest.raises(ServiceError) as raised:
        verdict(LOAD_3, outcomes)
    expected = (
        f"the load of model '{MODEL}' version 3 did not succeed on every worker, so they may now "
        f"serve different versions: worker 0 (pid 1): done (version 3); worker 1 (pid 2): "
        f"{second.status} {second.error}; send the request again, or restart the service")
    assert (raised.value.status_code, raised.value.message) == (500, expected)
    assert [record.getMessage() for record in caplog.records] == [expected]


def test_every_worker_timing_out_alike_is_still_a_500() -> None:
    """A worker that did not answer may still apply the command later: never 'nothing changed'."""
    outcomes = [Outcome(f"worker {i} (pid {i})", status=500, error="did not apply it within "
                        "120 s") for i in range(2)]
    with pytest.raises(ServiceError) as raised:
        verdict(LOAD_3, outcomes)
    assert raised.value.status_code == 500
    assert "may now serve different versions" in raised.value.message


def test_commands_wait_for_open_then_run_one_at_a_time_on_every_worker() -> None:
    workers, relay = fleet_of(2)
    first, second = Command("a", "load", MODEL, 2), Command("b", "unload", MODEL)
    relay.submit(workers[1], first)
    assert workers[0].sent == workers[1].sent == []  # still starting
    relay.open()
    relay.submit(workers[0], second)
    assert workers[0].sent == workers[1].sent == [Apply(first)]  # the second one waits
    relay.applied(workers[1], "a", Outcome("w1", 2))
    relay.applied(workers[0], "a", Outcome("w0", 2))
    assert workers[1].sent == [Apply(first), Done("a", (Outcome("w0", 2), Outcome("w1", 2))),
                               Apply(second)]
    assert workers[0].sent == [Apply(first), Apply(second)]


def test_closing_refuses_queued_and_new_commands_but_finishes_the_running_one() -> None:
    workers, relay = fleet_of(2)
    relay.open()
    relay.submit(workers[0], Command("a", "load", MODEL, 2))
    relay.submit(workers[1], Command("b", "load", MODEL, 1))
    relay.close()
    relay.submit(workers[1], Command("c", "unload", MODEL))
    refused = ("the service is shutting down; model control was not applied, send it to the "
               "restarted service")
    assert workers[1].sent == [Apply(Command("a", "load", MODEL, 2)),
                               Done("b", refused=refused), Done("c", refused=refused)]
    for worker in workers:
        relay.applied(worker, "a", Outcome(f"w{worker.index}", 2))
    assert workers[0].sent[-1] == Done("a", (Outcome("w0", 2), Outcome("w1", 2)))


def test_an_exited_or_silent_worker_is_reported_and_a_late_answer_dropped() -> None:
    workers, relay = fleet_of(3, timeout_s=5)
    workers[2].gone = True
    relay.open()
    relay.submit(workers[0], LOAD_3)
    relay.lost(workers[1])
    assert len(workers[0].sent) == 1  # worker 0 itself has not answered yet
    relay.tick(relay.running.deadline + 1 if relay.running else 0)
    relay.applied(workers[0], "c1", Outcome("w0", 3))  # too late: already answered
    assert workers[0].sent[-1] == Done("c1", (
        Outcome("worker 0 (pid 100)", status=500, error="did not apply it within 5 s"),
        Outcome("worker 1 (pid 101)", status=500, error="exited before applying it"),
        Outcome("worker 2 (pid 102)", status=500, error="exited before applying it"),
    ))
    assert relay.running is None


def test_link_applies_commands_and_fails_waiting_requests_when_the_supervisor_exits(
    tmp_path: Path,
) -> None:
    """Over a real pipe: an Apply from the supervisor reaches the worker's ModelRegistry (here a
    404, since the repository is empty), and EOF turns the waiting request into a 503."""
    settings = settings_for(tmp_path)
    registry = ModelRegistry(ModelRepository(tmp_path), settings, Metrics())
    supervisor, worker = multiprocessing.Pipe(duplex=True)

    async def scenario() -> None:
        link = FleetLink(worker, "worker 0 (pid 1)")
        lifecycle = Lifecycle()
        link.listen(registry, lifecycle)
        supervisor.send(Apply(Command("x", "unload", MODEL)))
        waiting = asyncio.create_task(link.submit("load", MODEL, 1))
        received: list[object] = []
        while len(received) < 2:  # the Submit and the Applied, in whichever order
            if supervisor.poll():
                message = supervisor.recv()
                if not isinstance(message, Heartbeat):
                    received.append(message)
            await asyncio.sleep(0.01)
        submitted = next(m for m in received if isinstance(m, Submit))
        assert submitted.command.op == "load" and submitted.command.version == 1
        assert next(m for m in received if isinstance(m, Applied)) == Applied("x", Outcome(
            "worker 0 (pid 1)", status=404,
            error=f"model '{MODEL}' is not loaded; loaded models: none"))
        assert not lifecycle.ready  # until every worker listens
        supervisor.send(FleetReady())
        for _ in range(500):
            if lifecycle.ready:
                break
            await asyncio.sleep(0.01)
        assert lifecycle.ready
        supervisor.close()
        with pytest.raises(ServiceUnavailable, match="its supervisor exited"):
            await asyncio.wait_for(waiting, 5)
        await link.close()

    asyncio.run(scenario())
    worker.close()
