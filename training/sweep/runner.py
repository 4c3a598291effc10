"""Run a sweep's trials: skip finished ones, spread the rest over worker processes.

Workers are `spawn`ed (a fresh interpreter each: no forked torch thread pools or locks) and
each gets cores // workers torch threads so the workers never fight over cores. Each record is
written the moment its trial ends, so killing the sweep loses at most the trials in flight.
"""

import itertools
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.sweep.cores import cores
from training.sweep.grid import Overrides, trial_id
from training.sweep.record import TrialRecord, read_record, write_record
from training.sweep.trial import TrialJob, run_trial

log = logging.getLogger("training.sweep")

TrialFunction = Callable[[TrialJob], TrialRecord]


@dataclass
class SweepOutcome:
    """Every trial's record (old and new) and how many ran now vs were already done."""

    records: list[TrialRecord]
    ran: int
    skipped: int
    lost: list[str] = field(default_factory=list)  # trial ids whose worker process died


def threads_per_worker(workers: int) -> int:
    return max(1, cores() // workers)


def estimated_cost(values: dict[str, Any]) -> float:
    """Rough work of a trial (weights x epochs): the runner starts the biggest trials first,
    so no worker is left alone with a long trial at the end (longest-processing-time first)."""
    try:
        sizes = [784, *values.get("hidden_sizes", []), 10]
        weights = sum(a * b for a, b in itertools.pairwise(sizes))
        return float(weights * int(values.get("epochs", 1)))
    except (TypeError, ValueError):
        return 0.0  # an invalid config fails at once; its cost does not matter


def init_worker(threads: int) -> None:
    """Runs once in each spawned worker before its first trial."""
    import torch  # imported here: the parent may never need torch for a fully resumed sweep

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def run_trials(
    sweep_dir: Path,
    base: dict[str, Any],
    trials: Sequence[Overrides],
    *,
    workers: int,
    trial_function: TrialFunction = run_trial,
) -> SweepOutcome:
    """Run every trial without a record in `sweep_dir`; return all records in `trials` order."""
    done: dict[str, TrialRecord] = {}
    todo: list[Overrides] = []
    for overrides in trials:
        record = read_record(sweep_dir, trial_id(overrides))
        if record is not None:
            done[record.trial_id] = record
        else:
            todo.append(overrides)
    todo.sort(key=lambda overrides: estimated_cost({**base, **overrides}), reverse=True)
    workers = max(1, min(workers, len(todo)))
    threads = threads_per_worker(workers)
    pending = [TrialJob(trial_id(o), dict(o), dict(base), str(sweep_dir), threads) for o in todo]
    skipped = len(done)
    log.info("%d trials: %d already done, %d to run on %d worker(s) x %d thread(s)",
             len(trials), skipped, len(pending), workers, threads)
    lost: list[str] = []

    def finish(record: TrialRecord) -> None:
        write_record(sweep_dir, record)
        done[record.trial_id] = record
        log.info("[%d/%d] %s", len(done), len(trials), summary(record))

    if workers == 1:
        init_worker(threads)
        for job in pending:
            finish(trial_function(job))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                 initargs=(threads,)) as pool:
            futures: dict[Future[TrialRecord], TrialJob] = {
                pool.submit(trial_function, job): job for job in pending
            }
            try:
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        finish(future.result())
                    except Exception as error:  # the worker died (killed, out of memory)
                        log.error("trial %s lost, its worker died: %s", job.trial_id, error)
                        lost.append(job.trial_id)
            except BaseException:  # Ctrl-C or SIGTERM: stop the workers too, keep the records
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in multiprocessing.active_children():
                    worker.terminate()
                raise
    records = [done[trial_id(o)] for o in trials if trial_id(o) in done]
    return SweepOutcome(records, ran=len(pending) - len(lost), skipped=skipped, lost=lost)


def summary(record: TrialRecord) -> str:
    """One log line per finished trial."""
    if record.status != "ok":
        return f"{record.trial_id} FAILED {record.overrides}: {record.error}"
    return (f"{record.trial_id} val {record.val_accuracy:.4f} test {record.test_accuracy:.4f} "
            f"epochs {record.epochs_run} {record.train_seconds:.1f}s {record.overrides}")
