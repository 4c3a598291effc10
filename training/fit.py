"""The training loop, written out in one `fit()`: batches, penalties, schedule, early stopping."""

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.augment import shift_each_image
from training.config import TrainConfig
from training.model import MLP, weight_penalty

EVAL_BATCH = 4096  # rows per forward pass when only measuring; bigger is faster, memory is small
CPUINFO = Path("/proc/cpuinfo")
# x86 AVX-512 BF16 and AMX; "bf16" is how Linux names Arm's BF16 extension (Graviton3 and later)
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
log = logging.getLogger(__name__)


class TrainingError(Exception):
    """Training diverged or could not run; the message says which setting to change."""


@dataclass
class FitResult:
    """What happened during fit: one history row per epoch and the early-stopping outcome."""

    history: list[dict[str, float]]
    best_epoch: int  # 1-based epoch whose weights the model holds if restore_best
    stopped_early: bool
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def cpu_has_native_bf16(cpuinfo: Path) -> bool | None:
    """Does the CPU `cpuinfo` describes compute bf16 matmuls in hardware? None: cannot tell.

    bf16=true is faster only with avx512_bf16 or AMX (1.5x on this project's benchmark machine);
    elsewhere oneDNN converts to and from float32 around every matmul, so autocast makes training
    slower, silently. torch has no public query for it: torch.backends.cpu.get_cpu_capability()
    says "AVX512" with or without bf16. So we read the flags the kernel reports.
    """
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    flag_lines = [line for line in lines if line.startswith(("flags", "Features"))]
    if not flag_lines:
        return None
    flags = {flag for line in flag_lines for flag in line.partition(":")[2].split()}
    return bool(flags & NATIVE_BF16_FLAGS)


def warn_if_bf16_is_emulated(config: TrainConfig) -> None:
    """One warning line at the start of a bf16 run on a CPU that would emulate it."""
    if config.bf16 and cpu_has_native_bf16(CPUINFO) is False:
        log.warning("bf16=true but this CPU has no native bf16 (avx512_bf16/amx); training may be "
                    "slower than fp32; set bf16=false")


def make_optimizer(model: MLP, config: TrainConfig) -> torch.optim.Optimizer:
    """Fused kernels: one pass over all parameters per step instead of a few ops per tensor."""
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, momentum=config.momentum,
                               fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                 fused=True)
    return torch.optim.Adam(params, lr=config.learning_rate, fused=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per epoch."""
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs, gamma=config.lr_step_gamma
        )
    return None


@torch.no_grad()
def evaluate(model: MLP, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (no dropout); restores the previous mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH].float())
        target = y[start : start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def shift_images(x: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Translate a batch of flattened 28x28 images by one random (dy, dx) in [-limit, limit].

    The pixels rolled over the edge come from the (blank) opposite border, so for centred
    digits this is a plain shift; the model learns that a stroke one pixel off is the same.
    """
    dy, dx = torch.randint(-limit, limit + 1, (2,), generator=generator).tolist()
    return x.view(-1, 28, 28).roll((dy, dx), dims=(1, 2)).reshape(len(x), -1)


def divergence_limit(classes: int, config: TrainConfig) -> float:
    """`divergence_factor` times ln(classes), the cross-entropy of a uniform guess."""
    return config.divergence_factor * math.log(max(classes, 2))


def is_diverged(train_loss: float, classes: int, config: TrainConfig) -> bool:
    """Not finite, or far above guessing: a loss of 3e21 is finite but no model learned it."""
    return not math.isfinite(train_loss) or train_loss > divergence_limit(classes, config)


def divergence_message(train_loss: float, epoch: int, classes: int, config: TrainConfig) -> str:
    return (
        f"training diverged: mean train loss {train_loss:.4g} in epoch {epoch} exceeds "
        f"{divergence_limit(classes, config):.3g} (divergence_factor {config.divergence_factor:g}"
        f" x ln {classes} classes); lower learning_rate (now {config.learning_rate:g}) or the "
        "l1/l2 coefficients"
    )


def flip_images(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of a batch of flattened 28x28 images left-right.

    A shirt mirrored is still a shirt (unlike a 2 or a 7), so for clothing this doubles the
    distinct images the model sees at the cost of one copy of the batch.
    """
    mirrored = torch.rand(len(x), generator=generator) < 0.5
    images = x.view(-1, 28, 28)
    return torch.where(mirrored[:, None, None], images.flip(2), images).reshape(len(x), -1)


def augment_batch(x: torch.Tensor, config: TrainConfig, generator: torch.Generator
                  ) -> torch.Tensor:
    """The batch as the config's augmentation leaves it: shifted (one shift per batch, or one
    per image), then mirrored; unchanged when no augmentation is on."""
    if config.augment_shift and config.augment_shift_mode == "image":
        x = shift_each_image(x, config.augment_shift, generator)
    elif config.augment_shift:
        x = shift_images(x, config.augment_shift, generator)
    if config.augment_flip:
        x = flip_images(x, generator)
    return x


def is_improvement(value: float, best: float, config: TrainConfig) -> bool:
    if config.monitor == "val_loss":
        return value < best - config.min_delta
    return value > best + config.min_delta


def fit(
    model: MLP,
    config: TrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    generator: torch.Generator,
    quiet: bool = False,
    after_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train `model` in place on uint8 pixel tensors; validate after every epoch.

    The whole data set stays in memory as one tensor and batches are slices of a random
    permutation: no DataLoader, no copies beyond the batch itself. Train loss/accuracy in the
    history are running means over the epoch's batches (with dropout on), as Keras reports them.
    `after_epoch` sees each history row and may raise to stop (a sweep's pruner does).
    """
    warn_if_bf16_is_emulated(config)
    # Weights decaying toward 0 become denormal floats, which the CPU handles ~100x slower:
    # a Fashion run's epochs crept from 1.6 s to 2.5 s. Flushing them to 0 changes no result
    # we measured (identical weights) and is process-wide, as torch offers it.
    torch.set_flush_denormal(True)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    batches = math.ceil(len(x_train) / config.batch_size)
    history: list[dict[str, float]] = []
    best = math.inf if config.monitor == "val_loss" else -math.inf
    best_epoch, best_state, waited, stopped_early = 0, None, 0, False
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_started, epoch_cpu = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        bar = tqdm(total=batches, desc=f"epoch {epoch}/{config.epochs}", disable=quiet, leave=True)
        for step, start in enumerate(range(0, len(x_train), config.batch_size), 1):
            index = order[start : start + config.batch_size]
            # index_select, not x_train[index]: the same rows, 13x (1 thread) to 26x (2 threads)
            # less CPU for a 256-row batch of uint8 images (advanced indexing's general path)
            xb, yb = x_train.index_select(0, index), y_train.index_select(0, index)
            xb = augment_batch(xb, config, generator).float()  # uint8 moves: a quarter the bytes
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(xb)
            data_loss = F.cross_entropy(logits.float(), yb,
                                        label_smoothing=config.label_smoothing)
            loss = data_loss
            if config.l1 or config.l2:
                loss = loss + weight_penalty(model, config.l1, config.l2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += data_loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
            if not quiet:
                seen = min(step * config.batch_size, len(x_train))
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}",
                                acc=f"{correct.item() / seen:.4f}", refresh=False)
                bar.update()
        train_loss, train_accuracy = loss_sum.item() / len(x_train), correct.item() / len(x_train)
        if is_diverged(train_loss, model.config.classes, config):
            bar.close()
            raise TrainingError(divergence_message(train_loss, epoch, model.config.classes, config))
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        history.append({
            "epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
            "val_loss": val_loss, "val_accuracy": val_accuracy, "learning_rate": lr,
            "seconds": time.perf_counter() - epoch_started,
            "cpu_seconds": time.process_time() - epoch_cpu,  # all threads: fair on a busy machine
        })
        bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{train_accuracy:.4f}",
                        val_loss=f"{val_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
        bar.close()
        if after_epoch is not None:
            after_epoch(history[-1])
        value = val_loss if config.monitor == "val_loss" else val_accuracy
        if is_improvement(value, best, config):
            best, best_epoch, waited = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if config.early_stopping and waited >= config.patience:
                stopped_early = epoch < config.epochs  # out of patience at the end saves nothing
                break
    if config.restore_best and best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    model.eval()
    return FitResult(history, best_epoch, stopped_early, time.perf_counter() - started)
