"""Training speed: fit() on a preset against two plain PyTorch loops of the same MLP, and against
the machine's matmul limit (a benchmark, not a test).

    .venv/bin/python bench/train_speed.py [--config training/configs/fashion-mnist.toml]
        [--rounds 6] [--threads 2] [key=value ...]

- tutorial: what a careful tutorial writes: float32 tensors in memory, a random permutation per
  epoch sliced into batches, default Adam at the preset's rate, no dropout, fp32. fit() / tutorial
  says what the project's choices (bf16, fused optimizer, cheap dropout) buy a user who would
  otherwise write that loop.
- tuned: the same loop given everything fit() has: the same model (same dropout, standardization
  in the graph), the same fused optimizer, label smoothing and augmentation, bf16 autocast
  when the preset asks for it, uint8 rows cast per batch (indexed as users write it: x[index]).
  fit() / tuned is fit()'s own overhead (validation pass, metrics, early stopping bookkeeping)
  against what it does better (a cheaper batch gather); 1.0x means they cancel.
- bare: the floor of any eager-mode loop for this network: only what a bf16 step cannot skip
  (the Linear layers and activations, no dropout, no standardization, no augmentation, no label
  smoothing, float rows ready in memory, the same fused optimizer, bf16 autocast when the preset
  asks for it). fit() does strictly more each step, so bare / matmul limit bounds how close
  fit() can come to the limit.
- matmul limit: the preset's matmul FLOPs per epoch (6 x rows x weights: forward, input
  gradient, weight gradient) at the rate this machine reaches on exactly those matmul shapes
  in the preset's precision. fit()'s epoch / limit is how far from the hardware it runs.

Each round runs one epoch of every loop (a fresh model each time; the first loop of a round
rotates) and measures the matmul limit again, and the ratios are taken within a round, then
their median over the rounds is printed: on a shared VM the speed of the whole machine drifts
by 20-40% within minutes, and comparing a loop's fast minute with another's slow one said more
about the machine than about the loops. Every loop is warmed up first. Denormal floats are
flushed for all of them (fit() does it; see training/fit.py). CPU time (all threads, this
process) is the steadier figure on a shared machine; wall time is printed next to it.
"""

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.config import TrainConfig, load_config
from training.data import load_dataset, split_validation
from training.evaluate import predict_probabilities
from training.fit import augment_batch, fit, make_optimizer
from training.model import ACTIVATIONS
from training.pipeline import build_model
from training.seeding import seed_everything

ROOT = Path(__file__).resolve().parents[1]
Speeds = list[tuple[float, float]]  # per epoch: (samples per wall second, per CPU second)


def timed_epochs(rows: int, batch: int, epochs: int,
                 step: Callable[[torch.Tensor], None]) -> Speeds:
    """`epochs` passes of `step(index)` over a fresh random permutation of `rows`, sliced into
    batches; samples per wall and per CPU second of each epoch."""
    speeds = []
    for _ in range(epochs):
        started, cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(rows)
        for start in range(0, rows, batch):
            step(order[start : start + batch])
        speeds.append((rows / (time.perf_counter() - started),
                       rows / (time.process_time() - cpu)))
    return speeds


def tutorial_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
                  lr: float, epochs: int) -> Speeds:
    """The textbook loop; returns samples/second per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(index: torch.Tensor) -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()

    model.train()
    return timed_epochs(len(x), batch, epochs, step)


def tuned_loop(model: torch.nn.Module, config: TrainConfig, x: torch.Tensor, y: torch.Tensor,
               epochs: int) -> Speeds:
    """The same loop with fit()'s model, optimizer and precision: fit() minus its bookkeeping."""
    optimizer = make_optimizer(model, config)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(config.seed)

    def step(index: torch.Tensor) -> None:
        xb = augment_batch(x[index], config, generator).float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y[index], label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    return timed_epochs(len(x), config.batch_size, epochs, step)


def bare_network(config: TrainConfig, classes: int) -> torch.nn.Sequential:
    """The preset's Linear layers and activation, nothing else."""
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in layer_shapes(config, classes):
        layers += [torch.nn.Linear(fan_in, fan_out), ACTIVATIONS[config.activation]()]
    return torch.nn.Sequential(*layers[:-1])  # logits: no activation after the last layer


def bare_loop(model: torch.nn.Module, config: TrainConfig, x: torch.Tensor, y: torch.Tensor,
              epochs: int) -> Speeds:
    """The least a step of this network does: forward, loss, backward, the fused update."""
    optimizer = make_optimizer(model, config)  # type: ignore[arg-type]

    def step(index: torch.Tensor) -> None:
        xb, yb = x.index_select(0, index), y.index_select(0, index)  # the cheapest gather
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return timed_epochs(len(x), config.batch_size, epochs, step)


def run_bare(config: TrainConfig, classes: int, x: np.ndarray, y: np.ndarray,
             epochs: int) -> tuple[torch.nn.Module, Speeds]:
    seed_everything(config.seed)
    model = bare_network(config, classes)
    # the bare net has no standardization layer: give it pixels scaled to 0..1 up front
    return model, bare_loop(model, config, torch.from_numpy(x).float() / 255,
                            torch.from_numpy(y), epochs)


def run_tutorial(config: TrainConfig, classes: int, x: np.ndarray, y: np.ndarray,
                 epochs: int) -> tuple[torch.nn.Module, Speeds]:
    seed_everything(config.seed)
    model = build_model(config.model_copy(update={"dropout": 0.0, "input_dropout": 0.0,
                                                  "standardize": False}), classes, x)
    speeds = tutorial_loop(model, torch.from_numpy(x).float(), torch.from_numpy(y),
                           config.batch_size, config.learning_rate, epochs)
    return model, speeds


def run_tuned(config: TrainConfig, classes: int, x: np.ndarray, y: np.ndarray,
              epochs: int) -> tuple[torch.nn.Module, Speeds]:
    seed_everything(config.seed)
    model = build_model(config, classes, x)
    return model, tuned_loop(model, config, torch.from_numpy(x), torch.from_numpy(y), epochs)


def layer_shapes(config: TrainConfig, classes: int) -> list[tuple[int, int]]:
    sizes = [784, *config.hidden_sizes, classes]
    return list(itertools.pairwise(sizes))


def matmul_limit_cpu_seconds(config: TrainConfig, classes: int, rows: int) -> tuple[float, float]:
    """(FLOP per CPU second on the preset's matmuls, CPU seconds one epoch's matmuls need)."""
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    batch = config.batch_size
    operands = []
    for fan_in, fan_out in layer_shapes(config, classes):
        activations = torch.randn(batch, fan_in).to(dtype)
        weight = torch.randn(fan_out, fan_in).to(dtype)
        grad = torch.randn(batch, fan_out).to(dtype)
        operands.append((activations, weight, grad))

    def step() -> None:
        for activations, weight, grad in operands:
            activations @ weight.t()  # forward
            grad @ weight  # gradient of the input
            grad.t() @ activations  # gradient of the weight

    step()
    flops_per_step = 6 * batch * sum(a * b for a, b in layer_shapes(config, classes))
    best = 0.0
    for _ in range(5):
        cpu, steps = time.process_time(), 0
        while time.process_time() - cpu < 0.3:
            step()
            steps += 1
        best = max(best, flops_per_step * steps / (time.process_time() - cpu))
    epoch_flops = 6 * rows * sum(a * b for a, b in layer_shapes(config, classes))
    return best, epoch_flops / best


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
    parser.add_argument("--rounds", type=int, default=6, help="one epoch of every loop each")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("overrides", nargs="*", help="key=value for both sides (e.g. batch_size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, ["epochs=1", "early_stopping=false",
                                       f"threads={args.threads}", *args.overrides])
    data = load_dataset(config.data)
    arrays = split_validation(data.x_train, data.y_train, config.validation_fraction, config.seed)
    classes, rows = len(data.class_names), len(arrays[0])
    print(f"{data.name}: {rows} train rows, hidden {config.hidden_sizes}, batch "
          f"{config.batch_size}, bf16 {config.bf16}, {args.rounds} rounds of one epoch per loop, "
          f"{args.threads} threads, overrides {args.overrides or 'none'}")

    torch.set_flush_denormal(True)
    loops: dict[str, Callable[[tuple[np.ndarray, ...]], tuple[torch.nn.Module, Speeds]]] = {
        "tutorial": lambda a: run_tutorial(config, classes, a[0], a[1], 1),
        "tuned": lambda a: run_tuned(config, classes, a[0], a[1], 1),
        "fit()": lambda a: run_ours(config, classes, a),
        "bare": lambda a: run_bare(config, classes, a[0], a[1], 1),
    }
    few = tuple(a[: 20 * config.batch_size] for a in arrays)
    for run in loops.values():
        run(few)  # warm-up

    speeds: dict[str, Speeds] = {name: [] for name in loops}
    limits: list[float] = []  # the matmul limit, CPU-s per epoch, measured in every round
    rates: list[float] = []  # the FLOP per CPU-second behind each limit
    models: dict[str, torch.nn.Module] = {}
    names = list(loops)
    for round_number in range(args.rounds):
        turn = round_number % len(names)  # each loop goes first in some round
        for name in names[turn:] + names[:turn]:
            models[name], epoch = loops[name](arrays)
            speeds[name] += epoch
        rate, limit = matmul_limit_cpu_seconds(config, classes, rows)
        rates.append(rate)
        limits.append(limit)

    print("round" + "".join(f"   {name:>9} samples/s (wall, cpu)" for name in speeds)
          + "   matmul limit CPU-s/epoch")
    for number, row in enumerate(zip(*speeds.values(), strict=True), 1):
        print(f"{number:5d}" + "".join(f"   {wall:15,.0f} {cpu:15,.0f}" for wall, cpu in row)
              + f"   {limits[number - 1]:10.2f}")
    for column, label in ((0, "wall"), (1, "cpu ")):
        best = {name: max(s[column] for s in epochs) for name, epochs in speeds.items()}
        print(f"best epoch, samples per {label} second: " + ", ".join(
            f"{name} {value:,.0f}" for name, value in best.items()))

    def ratios(top: str, bottom: str) -> list[float]:
        """top / bottom speed (per CPU-second), within each round."""
        return [a[1] / b[1] for a, b in zip(speeds[top], speeds[bottom], strict=True)]

    def over_limit(name: str) -> list[float]:
        """The loop's epoch in CPU-s as a multiple of the same round's matmul limit."""
        return [rows / s[1] / limit for s, limit in zip(speeds[name], limits, strict=True)]

    for label, values, goal in (("fit() / tuned", ratios("fit()", "tuned"), ">= 1.0x"),
                                ("fit() / tutorial", ratios("fit()", "tutorial"), ">= 2x"),
                                ("fit() / matmul limit", over_limit("fit()"), "<= 1.3x"),
                                ("bare / matmul limit", over_limit("bare"), "fit()'s floor")):
        print(f"{label}: median {statistics.median(values):.2f}x, per round "
              + " ".join(f"{value:.2f}" for value in values) + f" (goal {goal})")
    print(f"matmul rate: the preset's {'bf16' if config.bf16 else 'fp32'} matmul shapes run at "
          f"{min(rates) / 1e9:.0f}-{max(rates) / 1e9:.0f} GFLOP "
          "per CPU-second over the rounds")
    print("test accuracy after one epoch (last round): " + ", ".join(
        f"{name} {accuracy(model, data.x_test, data.y_test):.4f}"
        for name, model in models.items() if name != "bare"))


if __name__ == "__main__":
    main()
