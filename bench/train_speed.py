"""Training speed: our fit() on a preset vs a plain PyTorch loop of the same MLP (a benchmark,
not a test). Prints samples/second per epoch and test accuracy of both, then the ratio.

    .venv/bin/python bench/train_speed.py [--config training/configs/fashion-mnist.toml]
        [--epochs 3] [--threads 2] [key=value ...]

The plain loop is what a tutorial writes: float tensors already in memory, a shuffling
DataLoader over a TensorDataset, Adam at the preset's rate, no penalties, schedule or
early stopping. Both see the same rows, architecture and batch size.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from training.config import load_config
from training.data import load_dataset, split_validation
from training.evaluate import predict_probabilities
from training.fit import fit
from training.pipeline import build_model
from training.seeding import seed_everything

ROOT = Path(__file__).resolve().parents[1]


def plain_loop(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int, lr: float,
               epochs: int) -> list[float]:
    """Samples/second per epoch of the textbook loop."""
    loader = DataLoader(TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(y)),
                        batch_size=batch, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    speeds = []
    for _ in range(epochs):
        model.train()
        started = time.perf_counter()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        speeds.append(len(x) / (time.perf_counter() - started))
    return speeds


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict_probabilities(model, x).argmax(axis=1) == y).mean())  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "training/configs/fashion-mnist.toml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*", help="key=value applied to our run only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_config(args.config, [f"epochs={args.epochs}", "early_stopping=false"])
    ours = load_config(args.config, [f"epochs={args.epochs}", "early_stopping=false",
                                     *args.overrides])
    data = load_dataset(base.data)
    x_tr, y_tr, x_val, y_val = split_validation(
        data.x_train, data.y_train, base.validation_fraction, base.seed)
    classes = len(data.class_names)
    print(f"{data.name}: {len(x_tr)} train rows, hidden {base.hidden_sizes}, batch "
          f"{base.batch_size} (ours {ours.batch_size}), {args.epochs} epochs, "
          f"{args.threads} threads, overrides {args.overrides or 'none'}")

    seed_everything(base.seed)
    plain = build_model(base.model_copy(update={"dropout": 0.0, "input_dropout": 0.0,
                                                "standardize": False}), classes, x_tr)
    plain_speeds = plain_loop(plain, x_tr, y_tr, base.batch_size, base.learning_rate, args.epochs)
    plain_accuracy = accuracy(plain, data.x_test, data.y_test)

    generator = seed_everything(ours.seed)
    model = build_model(ours, classes, x_tr)
    result = fit(model, ours, *(torch.from_numpy(a) for a in (x_tr, y_tr, x_val, y_val)),
                 generator=generator, quiet=True)
    our_speeds = [len(x_tr) / row["seconds"] for row in result.history]
    our_accuracy = accuracy(model, data.x_test, data.y_test)

    print("epoch   plain samples/s   ours samples/s")
    for epoch, (p, o) in enumerate(zip(plain_speeds, our_speeds, strict=True), 1):
        print(f"{epoch:5d}   {p:15,.0f}   {o:14,.0f}")
    best_plain, best_ours = max(plain_speeds), max(our_speeds)
    print(f"plain loop: {best_plain:,.0f} samples/s (best epoch), "
          f"test accuracy {plain_accuracy:.4f}")
    print(f"fit():      {best_ours:,.0f} samples/s (best epoch), test accuracy {our_accuracy:.4f}")
    print(f"speed-up: {best_ours / best_plain:.2f}x (fit's epoch time includes validation)")


if __name__ == "__main__":
    main()
