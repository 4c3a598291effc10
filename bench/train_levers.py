"""One training epoch per speed lever, interleaved: which change buys what (a benchmark, not a
test). Companion of train_speed.py, which compares the adopted fit() with a plain loop.

    .venv/bin/python bench/train_levers.py [--threads 1] [--rounds 3] [--variants plain,bf16,...]

Each variant trains the fashion preset's MLP ([1024, 512], batch 256 unless it says otherwise)
on the 54,000 training rows for one epoch per round; rounds visit the variants in turn so load
from other work spreads over all of them. A warm-up of 10 batches per variant (which includes
torch.compile's compile time, printed separately) is not counted. Prints the best epoch's
samples per wall second and per CPU second (all threads of this process).
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from training.config import load_config
from training.data import load_dataset, split_validation
from training.pipeline import build_model

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, object]] = {
    "plain": {"dropout": 0.0, "optimizer": "adam", "uint8": False},  # the textbook loop
    "plain1024": {"dropout": 0.0, "optimizer": "adam", "uint8": False, "batch": 1024},
    "fp32": {},  # preset model: dropout 0.3, standardize, AdamW (foreach)
    "fused": {"fused": True},
    "bf16": {"bf16": True},
    "bf16fused": {"bf16": True, "fused": True},
    "compile": {"compile": True, "fused": True},
    "compilebf16": {"compile": True, "bf16": True, "fused": True},
    "bf16fused512": {"bf16": True, "fused": True, "batch": 512},
    "bf16fused1024": {"bf16": True, "fused": True, "batch": 1024},
}


def make_epoch(x8: torch.Tensor, y: torch.Tensor, dropout: float = 0.3, optimizer: str = "adamw",
               fused: bool = False, compile: bool = False, bf16: bool = False, batch: int = 256,
               uint8: bool = True) -> Callable[[int | None], float]:
    """A closure that trains one epoch (or `limit` batches) and returns the mean loss."""
    config = load_config(ROOT / "training/configs/fashion-mnist.toml", [f"dropout={dropout}"])
    torch.manual_seed(0)
    model = build_model(config, 10, x8.numpy())
    foreach = None if fused else True  # the default when not fused
    opt = (torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, fused=fused,
                             foreach=foreach)
           if optimizer == "adamw"
           else torch.optim.Adam(model.parameters(), lr=2e-3, fused=fused, foreach=foreach))
    forward = torch.compile(model) if compile else model
    x = x8 if uint8 else x8.float()
    generator = torch.Generator().manual_seed(0)

    def epoch(limit: int | None = None) -> float:
        model.train()
        order = torch.randperm(len(x), generator=generator)
        loss_sum, steps = torch.zeros(()), 0
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = forward(x[index].float())
            loss = F.cross_entropy(logits.float(), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            steps += 1
            if limit and steps >= limit:
                break
        return float(loss_sum) / steps

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist")
    x_tr, y_tr, _, _ = split_validation(data.x_train, data.y_train, 0.1, 0)
    x8, y = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    names = args.variants.split(",")
    epochs = {}
    for name in names:
        started, cpu = time.perf_counter(), time.process_time()
        epochs[name] = make_epoch(x8, y, **VARIANTS[name])  # type: ignore[arg-type]
        epochs[name](10)
        print(f"{name:14s} warm-up (with compile) {time.perf_counter() - started:6.1f} s wall "
              f"{time.process_time() - cpu:6.1f} s cpu", flush=True)
    speeds: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            started, cpu = time.perf_counter(), time.process_time()
            loss = epochs[name](None)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            speeds[name].append((len(x8) / wall, len(x8) / cpu))
            print(f"round {round_} {name:14s} {wall:6.1f} s wall {cpu:6.1f} s cpu  loss {loss:.4f}",
                  flush=True)
    print(f"{'variant':14s} {'samples/s wall':>15s} {'samples/cpu-s':>15s}  (best epoch)")
    for name in names:
        print(f"{name:14s} {max(s[0] for s in speeds[name]):15,.0f} "
              f"{max(s[1] for s in speeds[name]):15,.0f}")


if __name__ == "__main__":
    main()
