"""`mlp-train sweep`: run a study over TrainConfig fields from a preset and a sweep file.

    mlp-train sweep --grid training/configs/sweeps/fashion-hidden-layers.toml
    mlp-train sweep --grid my-sweep.toml --storage postgresql://user:pw@db/sweeps   # one worker

Every trial starts from the preset (--config, default mnist-5k), then the sweep file's [base],
then its own values; results go to --out (default runs/sweeps/<sweep file name>). Optuna keeps
the study (default: a SQLite file in --out). Each process is one worker; --workers N starts
N - 1 more copies of this command on this machine, and several machines share a study through
one --storage database. Re-running the same command resumes: finished trials stay finished.
"""

import argparse
import hashlib
import json
import logging
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import ConfigError, TrainConfig, load_config, validate_config
from training.sweep.cores import cores
from training.sweep.grid import Overrides, SweepError, SweepSpec, load_spec, trial_id

if TYPE_CHECKING:
    import optuna

    from training.sweep.record import TrialRecord
    from training.sweep.study import Objective

log = logging.getLogger("training.sweep")

# Fields that say where files go or how many threads to use: they never change a result, so
# they are left out of the sweep id and a sweep can resume with other paths or workers.
PLACEMENT_FIELDS = {"runs_dir", "repository", "threads", "data_cache"}


def default_workers() -> int:
    """One single-threaded worker per core: measured faster than fewer, wider workers for these
    small MLPs (docs/hidden-layers.md, "Workers and threads")."""
    return cores()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def fail(message: str) -> int:
    """One line on stderr and exit code 1, as every other mlp-train failure."""
    print(f"mlp-train sweep: error: {message}", file=sys.stderr)
    return 1


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `sweep` on the `mlp-train` subcommand parser."""
    parser = subparsers.add_parser(
        "sweep", help="train a grid or random sample of configs and compare them",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="training preset TOML every trial starts from (default mnist-5k)")
    parser.add_argument("--grid", type=Path, required=True,
                        help="sweep file: axes, mode, samples (training/configs/sweeps/*.toml)")
    parser.add_argument("--out", type=Path, default=None,
                        help="sweep folder (default runs/sweeps/<grid name>); reused to resume")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes on this machine (default: one per core, "
                        f"{cores()} here); each takes cores / workers torch threads")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage: sqlite:///path or postgresql://user:pw@host/db "
                        "shared by workers on many machines (default sqlite:///<out>/study.db)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for this worker (default: cores / --workers)")
    parser.add_argument("--publish-best", action="store_true",
                        help="re-train the best trial and publish it into the model repository")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: re-make the report (results.*, summary.csv, plots) "
                        "from the trials the study holds, also while other workers still run")
    parser.add_argument("--quiet", action="store_true", help="only warnings and the summary")
    parser.set_defaults(handler=run_sweep)
    return parser


def base_values(preset: Path | None, spec: SweepSpec) -> dict[str, Any]:
    """The preset with the sweep file's [base] applied, validated, as JSON-ready values."""
    preset_values = load_config(preset).model_dump(mode="json")
    config = validate_config({**preset_values, **spec.base}, source=f"{preset} + [base]")
    return config.model_dump(mode="json")


def sweep_id(name: str, base: dict[str, Any]) -> str:
    """`<sweep name>-<hash of the base config>`: the same study gets the same id everywhere."""
    relevant = {k: v for k, v in base.items() if k not in PLACEMENT_FIELDS}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def changed_fields(stored: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Result-changing fields whose value differs from a folder's stored base config.

    A field TrainConfig gained since the folder was made counts as unchanged when it holds its
    default (the old code behaved as that default), so adding a feature keeps sweeps resumable.
    """
    defaults = TrainConfig.model_construct().model_dump(mode="json")
    return sorted(
        name for name, value in base.items()
        if name not in PLACEMENT_FIELDS and stored.get(name, defaults.get(name)) != value
    )


def claim_folder(out: Path, identity: dict[str, Any]) -> str:
    """Write sweep.json, or check that the folder holds this same sweep (safe to resume);
    return the folder's sweep id."""
    marker = out / "sweep.json"
    if marker.exists():
        stored = json.loads(marker.read_text())
        changed = changed_fields(stored.get("base", {}), identity["base"])
        if changed:
            details = ", ".join(
                f"{name} {stored['base'].get(name)!r} -> {identity['base'][name]!r}"
                for name in changed)
            raise SweepError(
                f"{out} holds sweep {stored.get('sweep_id')} with another base config "
                f"({details}); pass another --out or delete that folder"
            )
        return str(stored["sweep_id"])
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(identity, indent=2) + "\n")
    return str(identity["sweep_id"])


@dataclass(frozen=True)
class Plan:
    """A checked sweep, ready to run: nothing has been trained yet."""

    spec: SweepSpec
    base: dict[str, Any]
    workers: int
    threads: int
    out: Path
    sweep_id: str
    storage: str


def default_out(args: argparse.Namespace) -> Path:
    return Path(args.out or Path("runs") / "sweeps" / args.grid.stem)


def plan(args: argparse.Namespace) -> Plan:
    """Read and check every input, claim the output folder; raises SweepError or ConfigError."""
    spec = load_spec(args.grid, TrainConfig.model_fields)
    base = base_values(args.config, spec)
    workers = args.workers or default_workers()
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    out = default_out(args)
    if getattr(args, "report_only", False) and not (out / "sweep.json").is_file():
        raise SweepError(f"--report-only: {out} holds no sweep yet (no sweep.json); "
                         "run the sweep first")
    identity = claim_folder(out, {"sweep_id": sweep_id(args.grid.stem, base),
                                  "grid": str(args.grid), "preset": str(args.config),
                                  "base": base})
    threads = args.threads or max(1, cores() // workers)
    return Plan(spec, base, workers, threads, out, identity,
                args.storage or sqlite_url(out / "study.db"))


def run_sweep(args: argparse.Namespace) -> int:
    """0: the study is done (failed trials included); 1: a bad option, preset, sweep file or
    storage, none succeeded, or publishing failed; 130: interrupted. Re-run to resume."""
    # Imported here, not at the top: `mlp-train --help` should not wait for torch to load.
    import optuna
    import sqlalchemy.exc

    from training.sweep.results import best_trial, write_report
    from training.sweep.study import open_study, work

    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING if args.quiet else logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        sweep = plan(args)
        study = open_study(sweep.spec, sweep.sweep_id, sweep.storage)
        check_study_base(study, sweep.base)
    except (SweepError, ConfigError) as error:
        return fail(str(error))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return fail(f"storage {redact(sweep.storage)}: {first}")
    report_only = bool(getattr(args, "report_only", False))
    helpers = [] if report_only else start_helpers(args, sweep)
    # `kill` (SIGTERM) then stops the sweep as Ctrl-C does: the running trial is queued again.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        ran = 0 if report_only else work(study, sweep.spec, make_objective(sweep))
    except KeyboardInterrupt:
        print(f"mlp-train sweep: interrupted; finished trials are kept in {redact(sweep.storage)}"
              ", re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        for helper in helpers:
            helper.wait()
    records, saved = study_records(study)
    write_report(records, sweep.out, f"Sweep {sweep.sweep_id}", base=sweep.base)
    failed = sum(r.status == "failed" for r in records)
    pruned = sum(r.status == "pruned" for r in records)
    print(f"sweep {sweep.sweep_id}: {len(records)} trials in the study ({ran} run by this "
          f"worker, {pruned} pruned, {failed} failed; pruning saved {saved}) -> "
          f"{sweep.out / 'results.md'}")
    best = best_trial(records)
    if best is None:
        return fail(f"all {len(records)} trials failed or were pruned; see results.md")
    print(f"best: {best.trial_id} val {best.val_accuracy:.4f} test {best.test_accuracy:.4f} "
          f"{best.overrides}")
    if args.publish_best:
        return publish(best, sweep.sweep_id, quiet=args.quiet,
                       command=getattr(args, "command_line", None))
    return 0


def redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}"


def check_study_base(study: "optuna.Study", base: dict[str, Any]) -> None:
    """The study keeps the whole base config; a worker with another one must not join it."""
    stored = study.user_attrs.get("base")
    if stored is None:
        study.set_user_attr("base", base)
        return
    changed = changed_fields(stored, base)
    if changed:
        raise SweepError(f"study {study.study_name} was started with another base config "
                         f"(differs in {', '.join(changed)}); use another --out or --storage")


def start_helpers(args: argparse.Namespace, sweep: Plan) -> list["subprocess.Popen[bytes]"]:
    """--workers N: N - 1 more copies of this command, each one worker on the same study."""
    if sweep.workers <= 1:
        return []
    command = [sys.executable, "-m", "training.cli", "sweep", "--grid", str(args.grid),
               "--out", str(sweep.out), "--storage", sweep.storage, "--workers", "1",
               "--threads", str(sweep.threads), "--quiet"]
    if args.config is not None:
        command += ["--config", str(args.config)]
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL)
            for _ in range(sweep.workers - 1)]


def make_objective(sweep: Plan) -> "Objective":
    """Train and measure one trial; report validation accuracy per epoch to the pruner."""
    import optuna

    from training.sweep.record import write_record
    from training.sweep.study import TrialFailed
    from training.sweep.trial import Pruned, TrialJob, run_trial

    def objective(overrides: Overrides, trial: optuna.Trial) -> float:
        def after_epoch(row: dict[str, float]) -> None:
            trial.report(row["val_accuracy"], int(row["epoch"]))
            if trial.should_prune():
                raise Pruned(int(row["epoch"]))

        job = TrialJob(trial_id(overrides), overrides, sweep.base, str(sweep.out), sweep.threads)
        record = run_trial(job, after_epoch)
        write_record(sweep.out, record)
        trial.set_user_attr("record", record.model_dump(mode="json"))
        log.info("%s", summary(record))
        if record.status == "pruned":
            raise optuna.TrialPruned(record.error)
        if record.status == "failed" or record.val_accuracy is None:
            raise TrialFailed(record.error)
        return record.val_accuracy

    return objective


def study_records(study: "optuna.Study") -> tuple[list["TrialRecord"], str]:
    """Every worker's finished trials, and the epochs pruning saved as text."""
    from training.sweep.record import TrialRecord
    from training.sweep.study import finished

    records = [TrialRecord.model_validate(t.user_attrs["record"])
               for t in finished(study) if "record" in t.user_attrs]
    planned = ran = 0
    for record in records:
        epochs = int((record.config or {}).get("epochs", 0))
        planned += epochs
        ran += record.epochs_run or 0 if record.status != "failed" else 0
    pruned_planned = sum(int((r.config or {}).get("epochs", 0)) - (r.epochs_run or 0)
                         for r in records if r.status == "pruned")
    share = pruned_planned / planned if planned else 0.0
    return records, f"{pruned_planned} of {planned} planned epochs ({share:.0%})"


def summary(record: "TrialRecord") -> str:
    """One log line per finished trial."""
    if record.status != "ok":
        return f"{record.trial_id} {record.status.upper()} {record.overrides}: {record.error}"
    return (f"{record.trial_id} val {record.val_accuracy:.4f} test {record.test_accuracy:.4f} "
            f"epochs {record.epochs_run} {record.train_seconds:.1f}s {record.overrides}")


def publish(best: "TrialRecord", identity: str, *, quiet: bool, command: str | None) -> int:
    """Publish with every core's threads: the sweep's workers are done by now."""
    from training.sweep.best import publish_best

    try:
        folder = publish_best(best, sweep_id=identity, threads=cores(), quiet=quiet,
                              command=command)
    except Exception as error:  # DataError, TrainingError, ExportError, PublishError, OSError
        return fail(f"publishing trial {best.trial_id}: {error}")
    print(f"published {folder}")
    return 0
