"""`mlp-train sweep`: run a hidden-layer study from a training preset and a sweep file.

    mlp-train sweep --grid training/configs/sweeps/fashion-hidden-layers.toml
    mlp-train sweep --config my-preset.toml --grid my-sweep.toml --out runs/sweeps/mine

Every trial starts from the preset (--config, default mnist-5k), then the sweep file's [base],
then its own values; results go to --out (default runs/sweeps/<sweep file name>).

Re-running the same command resumes: finished trials (one JSON each under <out>/trials/) are
skipped, and the table and plots are rebuilt from every record.
"""

import argparse
import hashlib
import json
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import ConfigError, TrainConfig, load_config, validate_config
from training.sweep.cores import cores
from training.sweep.grid import Overrides, SweepError, SweepSpec, expand, load_spec

if TYPE_CHECKING:
    from training.sweep.record import TrialRecord

log = logging.getLogger("training.sweep")

# Fields that say where files go or how many threads to use: they never change a result, so
# they are left out of the sweep id and a sweep can resume with other paths or workers.
PLACEMENT_FIELDS = {"runs_dir", "repository", "threads", "data_cache"}


def default_workers() -> int:
    """One single-threaded worker per core: measured faster than fewer, wider workers for these
    small MLPs (docs/hidden-layers.md, "Workers and threads")."""
    return cores()


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
                        help=f"parallel trial processes (default: one per core, {cores()} here)")
    parser.add_argument("--publish-best", action="store_true",
                        help="re-train the best trial and publish it into the model repository")
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

    trials: list[Overrides]
    base: dict[str, Any]
    workers: int
    out: Path
    sweep_id: str


def plan(args: argparse.Namespace) -> Plan:
    """Read and check every input, claim the output folder; raises SweepError or ConfigError."""
    spec = load_spec(args.grid, TrainConfig.model_fields)
    base = base_values(args.config, spec)
    workers = args.workers or default_workers()
    if workers < 1:
        raise SweepError(f"--workers must be at least 1, got {workers}")
    out = args.out or Path("runs") / "sweeps" / args.grid.stem
    identity = claim_folder(out, {"sweep_id": sweep_id(args.grid.stem, base),
                                  "grid": str(args.grid), "preset": str(args.config),
                                  "base": base})
    return Plan(expand(spec), base, workers, out, identity)


def run_sweep(args: argparse.Namespace) -> int:
    """0: every trial has a record (failed trials included); 1: a bad option, preset or sweep
    file, trials lost, none succeeded, or publishing failed; 130: interrupted. Re-run to resume."""
    # Imported here, not at the top: `mlp-train --help` should not wait for torch to load.
    from training.sweep.results import best_trial, write_report
    from training.sweep.runner import run_trials

    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING if args.quiet else logging.INFO)
    try:
        sweep = plan(args)
    except (SweepError, ConfigError) as error:
        return fail(str(error))
    # `kill` (SIGTERM) then stops the sweep as Ctrl-C does: workers ended, records kept.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        outcome = run_trials(sweep.out, sweep.base, sweep.trials, workers=sweep.workers)
    except KeyboardInterrupt:
        print(f"mlp-train sweep: interrupted; finished trials are kept in "
              f"{sweep.out / 'trials'}, re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_report(outcome.records, sweep.out, f"Sweep {sweep.sweep_id}")
    failed = sum(r.status == "failed" for r in outcome.records)
    print(f"sweep {sweep.sweep_id}: {len(outcome.records)}/{len(sweep.trials)} trials "
          f"({outcome.ran} run now, {outcome.skipped} resumed, {failed} failed) -> "
          f"{sweep.out / 'results.md'}")
    if outcome.lost:
        return fail(f"{len(outcome.lost)} trials lost (their worker process died); "
                    "re-run the same command to run them again")
    best = best_trial(outcome.records)
    if best is None:
        return fail(f"all {failed} trials failed; see the error column of results.md")
    print(f"best: {best.trial_id} val {best.val_accuracy:.4f} test {best.test_accuracy:.4f} "
          f"{best.overrides}")
    if args.publish_best:
        return publish(best, sweep.sweep_id, quiet=args.quiet,
                       command=getattr(args, "command_line", None))
    return 0


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
