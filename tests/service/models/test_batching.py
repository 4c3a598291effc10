"""DynamicBatcher with real asyncio and real threads; ordering comes from events, not sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from service.errors import DeadlineExceeded, ServiceUnavailable
from service.models.batching import (
    BatcherStoppedError,
    BatchResult,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)

WIDTH = 4
FAR = 60.0  # seconds: a deadline no test reaches


class RecordingModel:
    """A plain numpy 'model' that records each batch and can be held inside a call."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(batch.copy())
        self.entered.set()
        assert self.release.wait(30), "test never released the model"
        return {"double": batch * 2, "total": batch.sum(axis=1)}

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def rows(n: int, start: float = 0.0) -> np.ndarray:
    """n distinct rows, so a misrouted slice shows up."""
    return (np.arange(n * WIDTH, dtype=np.float32).reshape(n, WIDTH) + start)


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run one test body in a fresh event loop with a hard upper bound."""

    async def bounded() -> Any:
        async with asyncio.timeout(30):
            return await coro_fn()

    return asyncio.run(bounded())


async def wait_until(condition: Callable[[], bool]) -> None:
    """Yield to the loop (and threads) until `condition` holds."""
    while not condition():
        await asyncio.sleep(0.001)


async def started(model: RecordingModel, **kwargs: Any) -> DynamicBatcher:
    options = {"max_batch_rows": 64, "max_delay_s": 0.0, "max_queue_rows": 1024} | kwargs
    batcher = DynamicBatcher(model, **options)
    await batcher.start()
    return batcher


def submit(batcher: DynamicBatcher, data: np.ndarray, timeout: float = FAR) -> asyncio.Task[Any]:
    return asyncio.create_task(batcher.submit(data, deadline=time.monotonic() + timeout))


async def hold_worker(batcher: DynamicBatcher, model: RecordingModel) -> asyncio.Task[Any]:
    """Put one request into the model and keep it there until model.release is set."""
    first = submit(batcher, rows(1, start=-1000))
    await asyncio.to_thread(model.entered.wait, 10)
    return first


def assert_answer(result: BatchResult, data: np.ndarray) -> None:
    np.testing.assert_array_equal(result.outputs["double"], data * 2)
    np.testing.assert_array_equal(result.outputs["total"], data.sum(axis=1))


def test_concurrent_requests_share_one_model_call() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model)
        first = await hold_worker(batcher, model)
        waiting = [submit(batcher, rows(1, start=10 * i)) for i in range(5)]
        await wait_until(lambda: batcher.queue_rows == 5)
        model.release.set()
        results = await asyncio.gather(*waiting)
        await first
        assert model.sizes == [1, 5]
        assert all(r.batch_rows == 5 for r in results)
        await batcher.drain_and_stop()

    run(body)


def test_idle_batcher_answers_a_lone_request_without_waiting_for_the_delay() -> None:
    async def body() -> None:
        model = RecordingModel()
        batcher = await started(model, max_delay_s=FAR)
        result = await batcher.submit(rows(2), deadline=time.monotonic() + FAR)
        assert_answer(result, rows(2))
        assert result.queue_wait_s < 5  # far below the 60 s delay: nobody lingered
        await batcher.drain_and_stop()

    run(body)


def test_batches_never_exceed_max_rows_and_a_big_request_runs_alone() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_batch_rows=4)
        first = await hold_worker(batcher, model)
        singles = [submit(batcher, rows(1, start=i)) for i in range(6)]
        big = submit(batcher, rows(9, start=100))
        await wait_until(lambda: batcher.queue_rows == 15)
        model.release.set()
        await asyncio.gather(first, *singles)
        assert_answer(await big, rows(9, start=100))
        assert model.sizes == [1, 4, 2, 9]
        await batcher.drain_and_stop()

    run(body)


def test_under_load_the_batch_waits_for_a_request_still_arriving_then_goes_at_once() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_batch_rows=100, max_delay_s=FAR)
        first = await hold_worker(batcher, model)
        queued = submit(batcher, rows(1, start=1))
        await wait_until(lambda: batcher.queue_rows == 1)
        arrival = batcher.expect()  # a request whose body is still being read
        model.release.set()
        await first
        for _ in range(5):  # loop passes: the batch waits for the arrival, not for the clock
            await asyncio.sleep(0)
        assert model.sizes == [1]
        arrival.done()
        arrival.done()  # idempotent: the finally after a submit closes it again
        late = submit(batcher, rows(1, start=2))  # nobody else is coming: the batch goes now
        assert_answer(await queued, rows(1, start=1))
        assert_answer(await late, rows(1, start=2))
        assert model.sizes == [1, 2]
        await batcher.drain_and_stop()

    run(body)


def test_under_load_with_nothing_arriving_the_next_batch_does_not_wait_for_the_delay() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_batch_rows=100, max_delay_s=FAR)
        first = await hold_worker(batcher, model)
        queued = [submit(batcher, rows(2)), submit(batcher, rows(1, start=5))]
        await wait_until(lambda: batcher.queue_rows == 3)
        model.release.set()
        async with asyncio.timeout(5):  # far below max_delay_s
            results = await asyncio.gather(first, *queued)
        assert_answer(results[1], rows(2))
        assert_answer(results[2], rows(1, start=5))
        assert model.sizes == [1, 3]  # the two queued requests still shared one call
        await batcher.drain_and_stop()

    run(body)


def test_under_load_a_partial_batch_waits_for_an_open_arrival_at_most_max_delay() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_batch_rows=100, max_delay_s=0.2)
        first = await hold_worker(batcher, model)
        queued = submit(batcher, rows(3))
        await wait_until(lambda: batcher.queue_rows == 3)
        stuck = batcher.expect()  # an upload that never finishes
        model.release.set()
        await first
        result = await queued
        assert_answer(result, rows(3))
        assert result.queue_wait_s >= 0.19  # it waited for company, then went alone
        assert model.sizes == [1, 3]
        stuck.done()
        await batcher.drain_and_stop()

    run(body)


def test_queue_full_is_refused_at_once_and_nothing_is_queued() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_queue_rows=4)
        first = await hold_worker(batcher, model)
        queued = submit(batcher, rows(4))
        await wait_until(lambda: batcher.queue_rows == 4)
        expected = "4 rows are queued and this request adds 1"
        with pytest.raises(QueueFullError, match=expected) as err:
            await batcher.submit(rows(1), deadline=time.monotonic() + FAR)
        assert err.value.retry_after_s >= 1
        assert batcher.queue_rows == 4
        model.release.set()
        await asyncio.gather(first, queued)
        assert model.sizes == [1, 4]
        await batcher.drain_and_stop()

    run(body)


def test_refuse_if_full_refuses_only_while_the_queue_is_at_its_bound() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_queue_rows=3)
        first = await hold_worker(batcher, model)  # in the model, no longer queued
        batcher.refuse_if_full()
        waiting = [submit(batcher, rows(2)), submit(batcher, rows(1, start=10))]
        await wait_until(lambda: batcher.queue_rows == 3)
        with pytest.raises(QueueFullError, match=r"^server busy: 3 rows are queued, at the "
                           r"limit of 3; retry after 1 s$") as refused:
            batcher.refuse_if_full()
        assert refused.value.retry_after_s == 1
        with pytest.raises(QueueFullError, match="at the limit of 3"):
            batcher.expect()  # admission refuses as well, and opens no arrival
        model.release.set()
        await asyncio.gather(first, *waiting)
        assert batcher.queue_rows == 0
        batcher.refuse_if_full()  # room again once the queue drained
        await batcher.drain_and_stop()

    run(body)


def test_request_past_its_deadline_in_the_queue_fails_and_is_not_computed() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model)
        first = await hold_worker(batcher, model)
        with pytest.raises(DeadlineExceededError, match="timed out after"):
            await batcher.submit(rows(2, start=500), deadline=time.monotonic() + 0.05)
        on_time = submit(batcher, rows(1, start=7))
        await wait_until(lambda: batcher.queue_rows == 3)
        model.release.set()
        assert_answer(await on_time, rows(1, start=7))
        await first
        assert model.sizes == [1, 1]  # the expired rows never reached the model
        await batcher.drain_and_stop()

    run(body)


def test_deadline_passing_during_compute_gives_an_error_not_a_late_answer() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model)
        late = submit(batcher, rows(1), timeout=0.05)
        await asyncio.to_thread(model.entered.wait, 10)
        with pytest.raises(DeadlineExceededError):
            await late
        model.release.set()
        assert_answer(await batcher.submit(rows(2), deadline=time.monotonic() + FAR), rows(2))
        await batcher.drain_and_stop()

    run(body)


def test_failed_batch_fails_each_request_and_the_next_batch_works() -> None:
    calls: list[int] = []

    def flaky(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("model exploded")
        return {"double": batch * 2, "total": batch.sum(axis=1)}

    async def body() -> None:
        gate = RecordingModel(hold_first=True)

        def model(batch: np.ndarray) -> dict[str, np.ndarray]:
            gate(batch)
            return flaky(batch)

        batcher = DynamicBatcher(model, max_batch_rows=64, max_delay_s=0, max_queue_rows=64)
        await batcher.start()
        first = await hold_worker(batcher, gate)
        doomed = [submit(batcher, rows(1, start=i)) for i in range(3)]
        await wait_until(lambda: batcher.queue_rows == 3)
        gate.release.set()
        await first
        for task in doomed:
            with pytest.raises(RuntimeError, match="model exploded"):
                await task
        assert_answer(await batcher.submit(rows(2), deadline=time.monotonic() + FAR), rows(2))
        assert calls == [1, 3, 2]
        await batcher.drain_and_stop()

    run(body)


def test_outputs_without_one_row_per_input_fail_the_batch_clearly() -> None:
    async def body() -> None:
        batcher = DynamicBatcher(
            lambda b: {"bad": b[:1]}, max_batch_rows=8, max_delay_s=0, max_queue_rows=8
        )
        await batcher.start()
        with pytest.raises(RuntimeError, match=r"output 'bad' has shape \(1, 4\), expected 3 rows"):
            await batcher.submit(rows(3), deadline=time.monotonic() + FAR)
        await batcher.drain_and_stop()

    run(body)


def test_drain_and_stop_answers_everything_queued_then_refuses() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model, max_batch_rows=3)
        first = await hold_worker(batcher, model)
        queued = [submit(batcher, rows(2, start=10 * i)) for i in range(4)]
        await wait_until(lambda: batcher.queue_rows == 8)
        stopping = asyncio.create_task(batcher.drain_and_stop())
        also_stopping = asyncio.create_task(batcher.drain_and_stop())  # e.g. swap + shutdown
        await asyncio.sleep(0)  # drain_and_stop runs up to waiting for the worker
        with pytest.raises(BatcherStoppedError, match="not accepting requests"):
            await batcher.submit(rows(1), deadline=time.monotonic() + FAR)
        model.release.set()
        await asyncio.gather(stopping, also_stopping)
        for i, task in enumerate(queued):
            assert task.done()
            assert_answer(task.result(), rows(2, start=10 * i))
        await first
        with pytest.raises(BatcherStoppedError):
            await batcher.submit(rows(1), deadline=time.monotonic() + FAR)

    run(body)


def test_cancelled_waiters_do_not_break_the_batch() -> None:
    async def body() -> None:
        model = RecordingModel(hold_first=True)
        batcher = await started(model)
        first = await hold_worker(batcher, model)
        gone = submit(batcher, rows(5, start=900))
        stays = submit(batcher, rows(1, start=3))
        await wait_until(lambda: batcher.queue_rows == 6)
        gone.cancel()  # client disconnected while queued
        first.cancel()  # client disconnected while its batch computes
        model.release.set()
        assert_answer(await stays, rows(1, start=3))
        assert gone.cancelled() and first.cancelled()
        assert model.sizes == [1, 1]  # the cancelled rows were skipped
        await batcher.drain_and_stop()

    run(body)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=25),
    max_batch_rows=st.integers(1, 16),
)
def test_every_request_gets_exactly_its_own_rows(sizes: list[int], max_batch_rows: int) -> None:
    async def body() -> None:
        model = RecordingModel()
        batcher = await started(model, max_batch_rows=max_batch_rows, max_delay_s=0.001)
        inputs = [rows(n, start=1000 * i) for i, n in enumerate(sizes)]
        results = await asyncio.gather(
            *(batcher.submit(x, deadline=time.monotonic() + FAR) for x in inputs)
        )
        for x, result in zip(inputs, results, strict=True):
            assert_answer(result, x)
        assert sum(model.sizes) == sum(sizes)
        assert all(s <= max_batch_rows or s in sizes for s in model.sizes)
        await batcher.drain_and_stop()

    run(body)


def tiny_onnx_model(path: Path) -> Path:
    """784 -> 3 linear + softmax + argmax, the artifact's input/output names and dtypes."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(784, 3)).astype(np.float32) / 100, "w")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label_2d"], axis=1, keepdims=1),
            helper.make_node("Squeeze", ["label_2d", "axes"], ["label"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [weights, numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_real_onnxruntime_session_answers_each_request_as_if_alone(tmp_path: Path) -> None:
    session = ort.InferenceSession(
        str(tiny_onnx_model(tmp_path / "model.onnx")), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    calls: list[int] = []

    def run_batch(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        return dict(zip(names, session.run(names, {"input": batch}), strict=True))

    rng = np.random.default_rng(1)
    requests = [rng.uniform(0, 255, size=(n, 784)).astype(np.float32) for n in (1, 3, 1, 7, 2)]

    async def body() -> list[BatchResult]:
        batcher = DynamicBatcher(run_batch, max_batch_rows=8, max_delay_s=0.01, max_queue_rows=64)
        await batcher.start()
        results = await asyncio.gather(
            *(batcher.submit(x, deadline=time.monotonic() + FAR) for x in requests)
        )
        await batcher.drain_and_stop()
        return list(results)

    for x, result in zip(requests, run(body), strict=True):
        probabilities, label = session.run(names, {"input": x})
        np.testing.assert_allclose(result.outputs["probabilities"], probabilities, rtol=1e-5)
        np.testing.assert_array_equal(result.outputs["label"], label)
        assert result.outputs["label"].dtype == np.int64
        assert result.compute_s > 0 and result.batch_rows >= len(x)
    assert sum(calls) == 14 and len(calls) < 5  # merged, not one call per request


def test_on_batch_reports_each_model_call_and_bad_settings_are_refused() -> None:
    seen: list[tuple[int, float]] = []

    async def body() -> None:
        model = RecordingModel()
        batcher = DynamicBatcher(
            model, max_batch_rows=8, max_delay_s=0, max_queue_rows=8,
            on_batch=lambda n, s: seen.append((n, s)),
        )
        await batcher.start()
        await batcher.submit(rows(3), deadline=time.monotonic() + FAR)
        await batcher.drain_and_stop()

    run(body)
    assert [n for n, _ in seen] == [3] and seen[0][1] >= 0
    with pytest.raises(ValueError, match=r"max_batch_rows >= 1 \(got 0\)"):
        DynamicBatcher(RecordingModel(), max_batch_rows=0, max_delay_s=0, max_queue_rows=8)


def test_the_batchers_errors_are_the_services_own() -> None:
    """They reach the client as they are: one error vocabulary, no mapping in between."""
    full = QueueFullError(4, 2, 5)
    assert isinstance(full, ServiceUnavailable)
    assert (full.status_code, full.headers) == (503, {"Retry-After": "1"})
    assert full.message == ("server busy: 4 rows are queued and this request adds 2, over the "
                            "limit of 5; retry after 1 s")
    late = DeadlineExceededError(0.25)
    assert isinstance(late, DeadlineExceeded) and late.status_code == 504
    assert late.message == ("request timed out after 250 ms waiting for the model; retry later "
                            "or send fewer rows")
    stopped = BatcherStoppedError()
    assert isinstance(stopped, ServiceUnavailable) and stopped.status_code == 503


class ThreadRecordingModel(RecordingModel):
    """RecordingModel that also notes which thread ran each call."""

    def __init__(self, hold_first: bool = False) -> None:
        super().__init__(hold_first)
        self.threads: list[int] = []

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        return super().__call__(batch)


def test_lone_small_request_runs_inline_on_the_loop_and_larger_ones_on_the_model_thread() -> None:
    model = ThreadRecordingModel()
    batches: list[int] = []

    async def body() -> None:
        batcher = DynamicBatcher(model, max_batch_rows=64, max_delay_s=1.0, max_queue_rows=64,
                                 inline_max_rows=2, on_batch=lambda n, _s: batches.append(n))
        await batcher.start()
        small = await batcher.submit(rows(2), deadline=time.monotonic() + FAR)
        big = await batcher.submit(rows(3, 100), deadline=time.monotonic() + FAR)
        await asyncio.sleep(0)  # on_batch runs on the loop after the answers
        await batcher.drain_and_stop()
        np.testing.assert_array_equal(small.outputs["double"], rows(2) * 2)
        np.testing.assert_array_equal(big.outputs["double"], rows(3, 100) * 2)
        assert 0 <= small.queue_wait_s < 1 and small.batch_rows == 2

    run(body)
    loop_thread = threading.get_ident()  # run() drives the loop in this thread
    assert model.sizes == [2, 3] and batches == [2, 3]
    assert model.threads[0] == loop_thread and model.threads[1] != loop_thread


def test_no_inline_while_the_front_end_says_other_requests_wait() -> None:
    model = ThreadRecordingModel()
    crowd = [True]

    async def body() -> None:
        batcher = DynamicBatcher(model, max_batch_rows=64, max_delay_s=1.0, max_queue_rows=64,
                                 inline_max_rows=8, crowded=lambda: crowd[0])
        await batcher.start()
        await batcher.submit(rows(1), deadline=time.monotonic() + FAR)
        crowd[0] = False
        await batcher.submit(rows(1), deadline=time.monotonic() + FAR)
        await batcher.drain_and_stop()

    run(body)
    loop_thread = threading.get_ident()
    assert model.threads[0] != loop_thread and model.threads[1] == loop_thread


@pytest.mark.parametrize(("others_in", "sizes"), [(False, [1, 4]), (True, [5])])
def test_requests_arriving_together_at_an_idle_batcher_share_a_batch_when_others_are_in(
        others_in: bool, sizes: list[int]) -> None:
    """Five handlers runnable in the same loop pass: when the front end says other requests
    are in, the first waits that one pass and all five go to the model together; alone, the
    first goes at once (one client never waits) and the other four follow as one batch."""
    model = RecordingModel()

    async def body() -> None:
        batcher = DynamicBatcher(model, max_batch_rows=64, max_delay_s=FAR, max_queue_rows=64,
                                 crowded=lambda: others_in)
        await batcher.start()
        data = [rows(1, 10 * i) for i in range(5)]
        results = await asyncio.gather(*(submit(batcher, d) for d in data))
        for result, d in zip(results, data, strict=True):
            assert_answer(result, d)
        await batcher.drain_and_stop()

    run(body)
    assert model.sizes == sizes


def test_small_request_waits_in_the_queue_while_a_batch_computes() -> None:
    model = ThreadRecordingModel(hold_first=True)

    async def body() -> None:
        batcher = DynamicBatcher(model, max_batch_rows=64, max_delay_s=1.0, max_queue_rows=64,
                                 inline_max_rows=8)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(rows(20), deadline=time.monotonic() + FAR))
        await asyncio.to_thread(model.entered.wait, 30)  # the big batch is in the model
        second = asyncio.ensure_future(batcher.submit(rows(1, 7), deadline=time.monotonic()
                                                      + FAR))
        third = asyncio.ensure_future(batcher.submit(rows(1, 9), deadline=time.monotonic()
                                                     + FAR))
        await asyncio.sleep(0)
        model.release.set()
        results = await asyncio.gather(first, second, third)
        await batcher.drain_and_stop()
        np.testing.assert_array_equal(results[2].outputs["double"], rows(1, 9) * 2)

    run(body)
    loop_thread = threading.get_ident()
    assert model.sizes == [20, 2]  # the two small ones were batched together, as before
    assert loop_thread not in model.threads


def test_inline_failure_reaches_only_that_request_and_the_batcher_keeps_serving() -> None:
    calls = 0

    def flaky(batch: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return {"double": batch * 2}

    async def body() -> None:
        batcher = DynamicBatcher(flaky, max_batch_rows=8, max_delay_s=0.01, max_queue_rows=64,
                                 inline_max_rows=4)
        await batcher.start()
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(rows(1), deadline=time.monotonic() + FAR)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1), deadline=time.monotonic() - 1)
        result = await batcher.submit(rows(1, 5), deadline=time.monotonic() + FAR)
        np.testing.assert_array_equal(result.outputs["double"], rows(1, 5) * 2)
        await batcher.drain_and_stop()

    run(body)
    assert calls == 2  # the expired request never reached the model
