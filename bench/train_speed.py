"""Training speed: our fit() on a preset vs a plain PyTorch loop of the same MLP (a benchmark,
not a test). Prints samples/second per epoch and test accuracy of both, then the ratio.

    .venv/bin/python bench/train_speed.py [--config training/configs/fashion-mnist.toml]
        [--epochs 3] [--rounds 2] [--threads 2] [key=value ...]

The plain loop is what a careful tutorial writes: float32 tensors already in memory, one
random permutation per epoch sliced into batches, Adam at the preset's rate, model.train(),
zero_grad/backward/step; no dropout, penalties, schedule, validation or early stopping. Both
sides see the same rows, hidden sizes and batch size. fit()'s epoch time includes its
validation pass. The two alternate `--rounds` times (plain, ours, plain, ours, ...) so a load
spike from other work on the machine does not always hit the same side; each side is warmed up
first and the best epoch of all rounds counts. CPU time (all threads, this process) is the
steadier figure on a shared machine; wall time is printed next to it.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.config import TrainConfig, load_config
from training.data import load_dataset, split_validation
from training.evaluate import predict_probabilities
from training.fit import fit
from training.pipeline import build_model
from training.seeding import seed_everything

ROOT = Path(__file__).resolve().parents[1]
Speeds = list[tuple[float, float]]  # per epoch: (samples per wall second, per CPU second)


def plain_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, lr: float,
               epochs: int) -> Speeds:
    """The textbook loop; returns samples/second per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    speeds = []
    for _ in range(epochs):
        started, cpu = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        speeds.append((len(x) / (time.perf_counter() - started),
                       len(x) / (time.process_time() - cpu)))
    return speeds


def run_plain(config: TrainConfig, classes: int, x: np.ndarray, y: np.ndarray,
              epochs: int) -> tuple[torch.nn.Module, Speeds]:
    seed_everything(config.seed)
    model = build_model(config.model_copy(update={"dropout": 0.0, "input_dropout": 0.0,
                                                  "standardize": False}), classes, x)
    speeds = plain_loop(model, torch.from_numpy(x).float(), torch.from_numpy(y),
                        config.batch_size, config.learning_rate, epochs)
    return model, speeds


def run_ours(config: TrainConfig, classes: int, arrays: tuple[np.ndarray, ...],
             ) -> tuple[torch.nn.Module, Speeds]:
    generator = seed_everything(config.seed)
    model = build_model(config, classes, arrays[0])
    result = fit(model, config, *(torch.from_numpy(a) for a in arrays), generator=generator,
                 quiet=True)
    rows = len(arrays[0])
    return model, [(rows / r["seconds"], rows / r["cpu_seconds"]) for r in result.history]


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict_probabilities(model, x).argmax(axis=1) == y).mean())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "training/configs/fashion-mnist.toml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*", help="key=value for both sides (e.g. batch_size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, [f"epochs={args.epochs}", "early_stopping=false",
                                       f"threads={args.threads}", *args.overrides])
    data = load_dataset(config.data)
    arrays = split_validation(data.x_train, data.y_train, config.validation_fraction, config.seed)
    classes = len(data.class_names)
    print(f"{data.name}: {len(arrays[0])} train rows, hidden {config.hidden_sizes}, batch "
          f"{config.batch_size}, bf16 {config.bf16}, {args.epochs} epochs x {args.rounds} rounds, "
          f"{args.threads} threads, overrides {args.overrides or 'none'}")

    warm = config.model_copy(update={"epochs": 1})
    few = tuple(a[: 20 * config.batch_size] for a in arrays)
    run_plain(warm, classes, few[0], few[1], 1)
    run_ours(warm, classes, few)

    plain_speeds: Speeds = []
    our_speeds: Speeds = []
    for _ in range(args.rounds):
        plain, speeds = run_plain(config, classes, arrays[0], arrays[1], args.epochs)
        plain_speeds += speeds
        ours, speeds = run_ours(config, classes, arrays)
        our_speeds += speeds
    plain_accuracy = accuracy(plain, data.x_test, data.y_test)
    our_accuracy = accuracy(ours, data.x_test, data.y_test)

    print("epoch   plain samples/s (wall, cpu)   fit() samples/s (wall, cpu)")
    for epoch, (p, o) in enumerate(zip(plain_speeds, our_speeds, strict=True), 1):
        print(f"{epoch:5d}   {p[0]:10,.0f} {p[1]:10,.0f}        {o[0]:10,.0f} {o[1]:10,.0f}")
    for label, (plain_best, ours_best) in (
        ("wall", (max(s[0] for s in plain_speeds), max(s[0] for s in our_speeds))),
        ("cpu ", (max(s[1] for s in plain_speeds), max(s[1] for s in our_speeds))),
    ):
        print(f"best epoch, per {label} second: plain {plain_best:,.0f}, fit() {ours_best:,.0f}, "
              f"speed-up {ours_best / plain_best:.2f}x")
    print(f"test accuracy after {args.epochs} epochs (last round): plain {plain_accuracy:.4f}, "
          f"fit() {our_accuracy:.4f}")


if __name__ == "__main__":
    main()
