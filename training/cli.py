"""`mlp-train`: train and publish a model, or re-evaluate a published one.

Every expected failure (bad config, bad data, diverged training, failed export or publish, the
`train` extra not installed) ends as one line on stderr and exit code 1; argparse usage errors
exit with 2. Nothing here imports torch at module level: `--help` stays fast, and an install
without torch (the service image) gets a one-line error instead of a traceback.
"""

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from training.config import ConfigError, describe_keys, load_config
from training.dependencies import missing_message, missing_modules
from training.sweep.cli import add_sweep_parser, run_sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlp-train", description="Train, export and publish MLP classifiers on 28x28 images."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a model and publish it into the repository",
        description="Train with a TOML preset plus key=value overrides, export to ONNX, verify "
        "parity with onnxruntime, publish as the next version. "
        "Example: mlp-train train --config training/configs/fashion-mnist.toml l2=1e-4 "
        "hidden_sizes=[512,256]",
        epilog="config keys (key=value overrides; a preset sets many of them, "
        "--print-config shows the values a run would use):\n" + describe_keys(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", type=Path, default=None,
                       help="TOML preset (default: training/configs/mnist-5k.toml)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--print-config", action="store_true",
                       help="print the config the preset and overrides give (every key, with its "
                       "default and meaning, as TOML) and exit without training")
    publishing = train.add_mutually_exclusive_group()
    publishing.add_argument("--no-publish", action="store_true",
                            help="train, export and verify, but leave the repository untouched")
    publishing.add_argument("--skip-if-published", action="store_true",
                            help="exit 0 without training when the repository already holds a "
                            "complete version of the config's model name (for jobs that run on "
                            "every start, like docker compose up)")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="override a config key; values are TOML (l2=1e-4, hidden_sizes=[64])")

    evaluate = commands.add_parser(
        "evaluate", help="run a published model through onnxruntime on a data set's test split",
        description="Load MODEL_DIR/model.onnx with onnxruntime and report accuracy and loss "
        "on the test split of SOURCE.",
    )
    evaluate.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                          help="a published version folder, e.g. models/mnist-mlp/1")
    evaluate.add_argument("--data", required=True, metavar="SOURCE",
                          help="data source as in the config's `data` key, e.g. mnist-5k")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_sweep_parser(commands)
    return parser


def package_version() -> str:
    """The installed mlp-serve version (both commands report the same)."""
    try:
        return version("mlp-serve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def print_config(args: argparse.Namespace) -> int:
    """--print-config: needs no torch, so it works in any install."""
    try:
        print(describe_keys(load_config(args.config, args.overrides).model_dump()))
    except ConfigError as error:
        print(f"mlp-train train: error: {error}", file=sys.stderr)
        return 1
    return 0


def run_train(args: argparse.Namespace) -> None:
    from training.publish import published_versions

    config = load_config(args.config, args.overrides)
    if args.skip_if_published:
        versions = published_versions(config.repository, config.name)
        if versions:
            print(f"{config.name} version {versions[-1]} is already published in "
                  f"{config.repository}; not training (--skip-if-published)")
            return
    from training.pipeline import train_and_publish  # torch: only once training will happen

    result = train_and_publish(config, quiet=args.quiet, publish=not args.no_publish,
                               command=args.command_line)
    fit = result.fit
    stop = f"stopped early, best epoch {fit.best_epoch}" if fit.stopped_early else (
        f"best epoch {fit.best_epoch}")
    print(f"trained {config.name} on {config.data}: {fit.epochs_run} epochs ({stop}) in "
          f"{fit.seconds:.1f}s")
    print(f"test accuracy {result.metrics['test_accuracy']:.4f}, "
          f"test loss {result.metrics['test_loss']:.4f}; ONNX parity max |diff| "
          f"{result.parity.max_abs_diff:.2g} on {result.parity.rows} rows")
    print(f"history and plots: {result.run_dir}")
    if result.published_dir is None:
        print(f"not published; ONNX file: {result.onnx_path}")
        return
    print(f"published: {result.published_dir}")
    if result.int8 is not None:
        where = (f"published: {result.int8.published_dir}" if result.int8.published_dir
                 else f"{result.int8.name} NOT published (loses more than the margin "
                 "int8_max_accuracy_drop)")
        print(f"{result.int8.comparison.verdict()}; {where}")
    print(f"serve it with: mlp-serve --repository {config.repository}")


def run_evaluate(args: argparse.Namespace) -> None:
    from training.data import load_dataset
    from training.evaluate import evaluate_published

    dataset = load_dataset(args.data)
    metrics = evaluate_published(args.model_dir, dataset)
    if args.json:
        print(json.dumps(metrics))
        return
    print(f"{args.model_dir} on {dataset.name} test split ({len(dataset.y_test)} rows): "
          f"accuracy {metrics['test_accuracy']:.4f}, loss {metrics['test_loss']:.4f}")


def expected_errors() -> tuple[type[Exception], ...]:
    """Imported on use: --help stays fast without loading torch."""
    from training.data import DataError
    from training.evaluate import ModelFileError
    from training.export import ExportError
    from training.fit import TrainingError
    from training.gate import QualityGateError
    from training.publish import PublishError

    return (
        ConfigError, DataError, TrainingError, ExportError, QualityGateError, PublishError,
        ModelFileError, OSError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["mlp-train", *argv])  # recorded in the model card
    handlers = {"train": run_train, "evaluate": run_evaluate}
    if args.command == "train" and args.print_config:
        return print_config(args)
    missing = missing_modules()
    if missing:  # every command needs torch; say so before anything tries to import it
        print(f"mlp-train {args.command}: error: {missing_message(missing)}", file=sys.stderr)
        return 1
    try:
        if args.command == "sweep":
            return run_sweep(args)  # reports its own per-trial failures and exit code
        handlers[args.command](args)
    except ModuleNotFoundError as error:  # installed but broken (a dependency of a dependency)
        print(f"mlp-train {args.command}: error: {missing_message([str(error.name)])}",
              file=sys.stderr)
        return 1
    except expected_errors() as error:
        print(f"mlp-train {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlp-train {args.command}: interrupted; nothing was published", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line for the user, with what to report
        print(f"mlp-train {args.command}: internal error: {type(error).__name__}: {error} "
              "(please report this)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
