"""A sweep as an Optuna study: Optuna samples, stores, resumes and shares; we train and measure.

- Storage: a SQLite file in the sweep folder by default; any SQLAlchemy URL (`postgresql://...`)
  lets workers on many machines share one study. Each `mlp-train sweep` process is one worker.
- Grid mode: every grid point (and each [[trials]] entry) is enqueued once, by the worker that
  creates the study; workers pop queued trials, and the database hands each to exactly one.
- tpe / random mode: Optuna's TPESampler / RandomSampler (seeded) draw from the [axes] values
  until the study holds `samples` trials; [[trials]] entries are enqueued first.
- Pruning: with `pruner = "median"` a trial reports validation accuracy after every epoch and
  Optuna's MedianPruner stops one that is below the median of earlier trials at that epoch.
- A worker that dies leaves its trial RUNNING; the heartbeat marks it failed after the grace
  period and RetryHeartbeatStaleTrialCallback queues it again, so the study still completes.

Axis values (lists like hidden_sizes) are stored as JSON strings: Optuna's categorical
parameters accept only scalars.
"""

import json
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from training.sweep.grid import Overrides, SweepSpec, expand, trial_id

log = logging.getLogger("training.sweep")

HEARTBEAT_S = 30
GRACE_S = 120
QUEUE_WAIT_S = 120  # how long a worker waits for the creating worker to fill the grid queue
QUEUED_ATTR = "queued_trials"
OTHERS_POLL_S = 1.0  # how often a worker whose queue ran dry looks at the others' trials
STORAGE_ATTEMPTS = 4


class TrialFailed(Exception):
    """A trial that could not produce a result; recorded, the sweep goes on."""


def storage(url: str) -> RDBStorage:
    """The study's database, with heartbeats so a dead worker's trial is run again.

    Workers starting together race to create the tables on an empty database; the loser's
    CREATE fails, and a second attempt finds the tables made.
    """
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                    engine_kwargs=None if url.startswith("sqlite") else {"pool_pre_ping": True},
                )
        except sqlalchemy.exc.DBAPIError:
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.mode == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed)
    if spec.mode == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.RandomSampler(seed=spec.seed)  # grid: every trial is enqueued


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.prune_after_trials,
                                           n_warmup_steps=spec.prune_after_epochs)
    return optuna.pruners.NopPruner()


def choices(spec: SweepSpec) -> dict[str, list[str]]:
    """Every value each field takes anywhere in the sweep, as JSON: one fixed categorical
    distribution per field, so grid points and extra trials share a search space."""
    values: dict[str, set[str]] = {}
    for overrides in [*expand(spec), *spec.trials]:
        for name, value in overrides.items():
            values.setdefault(name, set()).add(encode(value))
    for name, axis in spec.axes.items():
        values.setdefault(name, set()).update(encode(value) for value in axis)
    return {name: sorted(found) for name, found in values.items()}


def encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def open_study(spec: SweepSpec, name: str, url: str) -> optuna.Study:
    """Create the study and fill its queue, or load it if another worker created it first."""
    common = {"study_name": name, "storage": storage(url), "sampler": sampler(spec),
              "pruner": pruner(spec), "direction": "maximize"}
    try:
        study = optuna.create_study(**common, load_if_exists=False)  # type: ignore[arg-type]
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**{k: v for k, v in common.items() if k != "direction"})  # type: ignore[arg-type]
        wait_for_queue(study)
        return study
    queued = expand(spec) if spec.mode == "grid" else list(spec.trials)
    for overrides in queued:
        enqueue(study, overrides)
    study.set_user_attr(QUEUED_ATTR, len(queued))
    return study


def enqueue(study: optuna.Study, overrides: Overrides) -> None:
    """Queue one trial; its user attrs tell a worker which fields it fixes."""
    study.enqueue_trial({k: encode(v) for k, v in overrides.items()},
                        user_attrs={"fields": list(overrides)})


def wait_for_queue(study: optuna.Study) -> None:
    """A second worker may load the study before its creator has queued every trial."""
    deadline = time.monotonic() + QUEUE_WAIT_S
    while QUEUED_ATTR not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.5)


def target_trials(spec: SweepSpec) -> int:
    """How many trials the study should end with."""
    if spec.mode == "grid":
        return len(expand(spec))
    return (spec.samples or 0) + len(spec.trials)


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end (complete, pruned or failed), not the placeholders a worker
    lost in a race for the last queued trial."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and "lost_race" not in t.user_attrs]


Objective = Callable[[Overrides, optuna.Trial], float]


def done(study: optuna.Study, spec: SweepSpec) -> bool:
    """Grid: nothing left in the queue. Sampled modes: enough trials started, none queued."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    if spec.mode == "grid":
        return True
    started = [t for t in trials if "lost_race" not in t.user_attrs]
    return len(started) >= target_trials(spec)


def work(study: optuna.Study, spec: SweepSpec, objective: Objective) -> int:
    """Run trials until the study is done and no other worker is still running one (so the
    report that follows holds every trial); return how many this worker ran.

    Study.optimize drives the loop (it keeps the heartbeat going); a grid worker that finds the
    queue emptied by another worker between its check and its pop records a `lost_race`
    placeholder that never trains, and stops.
    """
    space = choices(spec)
    ran = 0
    current: list[Overrides] = []

    def run_one(trial: optuna.Trial) -> float:
        nonlocal ran
        fixed = trial.user_attrs.get("fields")
        if spec.mode == "grid" and fixed is None:
            trial.set_user_attr("lost_race", True)
            study.stop()
            raise TrialFailed("the queue was empty: another worker took the last trial")
        names = list(fixed) if fixed is not None else list(spec.axes)
        overrides = {name: json.loads(str(trial.suggest_categorical(name, space[name])))
                     for name in names}
        trial.set_user_attr("trial_id", trial_id(overrides))
        current[:] = [overrides]
        ran += 1
        value = objective(overrides, trial)
        current.clear()
        return value

    def stop_when_done(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if done(study, spec):
            study.stop()

    while True:
        if not done(study, spec):
            try:
                study.optimize(run_one, callbacks=[stop_when_done], catch=(TrialFailed,))
            except BaseException:  # Ctrl-C or SIGTERM: hand the interrupted trial back
                if current:
                    enqueue(study, current[0])
                raise
        if not wait_for_other_workers(study, spec):
            return ran


def running_elsewhere(study: optuna.Study) -> int:
    """Trials other workers are running now (this worker runs none between its trials)."""
    return sum(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def wait_for_other_workers(study: optuna.Study, spec: SweepSpec) -> bool:
    """Once the queue is empty, wait while other workers still run trials, so this worker's
    report covers the whole study. True when a trial came back to the queue meanwhile (a dead
    worker's, failed once its heartbeat is GRACE_S old and queued again): run it, then wait
    again. False when no trial is running any more."""
    waiting_for = running_elsewhere(study)
    if waiting_for:
        log.info("queue empty; waiting for %d trial(s) other workers are running", waiting_for)
    while running_elsewhere(study):
        time.sleep(OTHERS_POLL_S)
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9, as the heartbeat
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        if not done(study, spec):
            return True
    return False
