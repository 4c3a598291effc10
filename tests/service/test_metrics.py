"""Request and model metrics counted in Tallies: the same exposition as prometheus_client's own
`observe`/`inc`, in one process and in multiprocess mode, held back only until a flush."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.http.app import create_app
from service.metrics import LATENCY_BUCKETS, DirectTally, Metrics, Tally, tally
from tests.service.conftest import MODEL, payload, settings_for
from tests.service.servers import serve_in_thread

# Every bucket bound exactly (`observe` puts a value equal to a bound in that bucket), values
# between bounds, zero, and values past the last bound (+Inf).
AMOUNTS = [0.0, *LATENCY_BUCKETS, *(b * 0.999 for b in LATENCY_BUCKETS), 7.5, 1e9, 0.0003]


def pair(registry: CollectorRegistry) -> tuple[Histogram, Counter]:
    return (Histogram("seconds", "h", ["route"], buckets=LATENCY_BUCKETS, registry=registry),
            Counter("done", "c", ["route"], registry=registry))


def test_a_flushed_tally_exposes_what_observe_and_inc_would() -> None:
    direct, counted = CollectorRegistry(), CollectorRegistry()
    histogram, counter = pair(direct)
    for amount in AMOUNTS:
        histogram.labels("a").observe(amount)
        counter.labels("a").inc(3)
    histogram_t, counter_t = pair(counted)
    held = tally(histogram_t.labels("a"), counter_t.labels("a"))
    assert isinstance(held, Tally)  # this prometheus_client has the values a Tally adds to
    for amount in AMOUNTS:
        held.observe(amount, 3)
    assert counted.get_sample_value("done_total", {"route": "a"}) == 0  # held back until...
    held.flush()
    assert generate_latest(counted) == generate_latest(direct)
    held.flush()  # nothing new: adds nothing
    assert generate_latest(counted) == generate_latest(direct)
    held.observe(0.002)
    held.flush()
    histogram.labels("a").observe(0.002)
    counter.labels("a").inc()
    assert generate_latest(counted) == generate_latest(direct)


MULTIPROCESS = textwrap.dedent("""
    import sys
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from service.metrics import Metrics
    folder, how = sys.argv[1], sys.argv[2]
    metrics = Metrics(multiprocess_dir=folder)
    amounts = [float(a) for a in sys.argv[3:]]
    if how == "direct":
        for amount in amounts:
            metrics.latency.labels("http", "/infer", "m", "200").observe(amount)
            metrics.requests.labels("http", "/infer", "m", "1", "200").inc()
    else:
        for amount in amounts:
            metrics.observe_request("/infer", "m", "1", 200, amount)
        metrics.flush()
    fleet = CollectorRegistry()
    MultiProcessCollector(fleet, path=folder)
    sys.stdout.buffer.write(generate_latest(fleet))
""")


def test_multiprocess_files_hold_what_observe_and_inc_would_write(tmp_path: Path) -> None:
    """The two-worker default: prometheus_client picks its mmap-file values at import, from
    PROMETHEUS_MULTIPROC_DIR, so each side runs in its own interpreter."""
    scraped = {}
    for how in ("direct", "tally"):
        folder = tmp_path / how
        folder.mkdir()
        run = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS, str(folder), how, *map(repr, AMOUNTS)],
            env={"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": "/usr/bin:/bin"},
            capture_output=True, check=True, cwd=Path(__file__).parents[2], timeout=60)
        scraped[how] = samples(run.stdout.decode())
    every = (("endpoint", "/infer"), ("le", "+Inf"), ("model", "m"), ("protocol", "http"),
             ("status", "200"))
    assert ("mlp_request_duration_seconds_bucket", every, len(AMOUNTS)) in scraped["tally"]
    assert scraped["tally"] == scraped["direct"]


def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample of an exposition (the multiprocess collector's family order varies)."""
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_without_the_values_it_adds_to_a_tally_observes_at_once() -> None:
    class Child:  # what a prometheus_client child without `_buckets`/`_sum` would offer
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

        def inc(self, amount: float = 1) -> None:
            self.seen.append(amount)

    histogram, counter = Child(), Child()
    direct = tally(histogram, counter)
    assert isinstance(direct, DirectTally)
    direct.observe(0.25, 4)
    assert (histogram.seen, counter.seen) == ([0.25], [4])


def test_a_scrape_shows_every_request_and_the_stop_flushes_the_rest(repo: Path) -> None:
    app = create_app(settings_for(repo))
    metrics: Metrics = app.state.metrics
    request = {"endpoint": "/v2/models/{name}/infer", "model": MODEL, "protocol": "http",
               "status": "200", "version": "2"}
    infer, body = f"/v2/models/{MODEL}/infer", payload("infer_flat")
    with serve_in_thread(app) as http:
        for _ in range(3):
            assert http.post(infer, json=body).status_code == 200
        scrape = http.get("/metrics").text
        assert ('mlp_requests_total{endpoint="/v2/models/{name}/infer",model="mnist-mlp",'
                'protocol="http",status="200",version="2"} 3.0') in scrape
        assert metrics.registry.get_sample_value("mlp_requests_total", request) == 3
        assert metrics.registry.get_sample_value(
            "mlp_inference_rows_total", {"model": MODEL, "version": "2"}) == 6  # 2 rows each
        assert http.post(infer, json=body).status_code == 200
        # Held back: no scrape since the fourth request...
        assert metrics.registry.get_sample_value("mlp_requests_total", request) == 3
    # ...until the app stopped (with --workers N, what a worker counted outlives it).
    assert metrics.registry.get_sample_value("mlp_requests_total", request) == 4
    assert metrics.registry.get_sample_value(
        "mlp_request_duration_seconds_count", {k: v for k, v in request.items()
                                               if k != "version"}) == 4


def test_batches_of_every_loaded_version_are_counted_once_per_flush() -> None:
    metrics = Metrics()
    first, reloaded = metrics.batch_recorder(MODEL, 1), metrics.batch_recorder(MODEL, 2)
    first(4, 0.001)
    reloaded(8, 0.002)
    metrics.flush()
    metrics.flush()
    count = metrics.registry.get_sample_value
    assert count("mlp_batch_rows_count", {"model": MODEL}) == 2
    assert count("mlp_batch_rows_sum", {"model": MODEL}) == 12
    assert count("mlp_compute_seconds_bucket", {"model": MODEL, "le": "0.001"}) == 1
    assert count("mlp_batch_executions_total", {"model": MODEL, "version": "2",
                                                "batch_size": "8"}) == 1
