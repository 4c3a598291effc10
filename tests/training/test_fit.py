"""fit(): early stopping restores the best weights, runs are reproducible, penalties regularize."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.synthetic import fast_config, make_dataset, single_thread  # noqa: F401
from training import fit as fitting
from training.config import TrainConfig
from training.data import Dataset, load_dataset, split_validation
from training.fit import (
    FitResult,
    TrainingError,
    cpu_has_native_bf16,
    evaluate,
    fit,
    flip_images,
    shift_images,
)
from training.pipeline import build_model
from training.seeding import seed_everything

pytestmark = pytest.mark.usefixtures("single_thread")


def train(config: TrainConfig, data: Dataset) -> tuple[torch.nn.Module, FitResult, tuple]:
    """The same steps the pipeline takes, returning the validation tensors too."""
    x_tr, y_tr, x_val, y_val = split_validation(
        data.x_train, data.y_train, config.validation_fraction, config.seed
    )
    generator = seed_everything(config.seed)
    model = build_model(config, len(data.class_names), x_tr)
    tensors = [torch.from_numpy(a) for a in (x_tr, y_tr, x_val, y_val)]
    result = fit(model, config, *tensors, generator=generator, quiet=True)
    return model, result, tensors


def test_history_has_one_row_per_epoch(tmp_path: Path) -> None:
    _, result, _ = train(fast_config(tmp_path, epochs=4, early_stopping=False), make_dataset())
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    keys = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
    assert keys <= set(result.history[0])
    assert result.history[-1]["val_accuracy"] > 0.6  # 3 classes: chance is 0.33


def test_early_stopping_restores_the_best_epoch(tmp_path: Path) -> None:
    """A wide net on few noisy rows overfits: val loss turns up, training stops, best comes back."""
    data = make_dataset(n_train=60)
    config = fast_config(tmp_path, hidden_sizes=[256], epochs=60, patience=3,
                         learning_rate=0.01, batch_size=16)
    model, result, (_, _, x_val, y_val) = train(config, data)
    val_losses = [row["val_loss"] for row in result.history]
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + config.patience
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert result.best_epoch < result.epochs_run
    restored_loss, _ = evaluate(model, x_val, y_val)
    assert restored_loss == pytest.approx(min(val_losses), rel=1e-6)
    assert restored_loss < val_losses[-1]


def test_patience_running_out_at_the_last_epoch_is_not_stopping_early(tmp_path: Path) -> None:
    """The run that stopped early, planned to end exactly where it stopped: the same epochs,
    the same best epoch, but nothing was cut short."""
    data = make_dataset(n_train=60)
    changes = {"hidden_sizes": [256], "patience": 3, "learning_rate": 0.01, "batch_size": 16}
    _, stopped, _ = train(fast_config(tmp_path, epochs=60, **changes), data)
    assert stopped.stopped_early and stopped.epochs_run < 60
    _, planned, _ = train(fast_config(tmp_path, epochs=stopped.epochs_run, **changes), data)
    assert planned.epochs_run == stopped.epochs_run
    assert planned.best_epoch == stopped.best_epoch
    assert not planned.stopped_early


def test_without_restore_the_last_weights_stay(tmp_path: Path) -> None:
    data = make_dataset(n_train=60)
    config = fast_config(tmp_path, hidden_sizes=[256], epochs=60, patience=3,
                         learning_rate=0.01, batch_size=16, restore_best=False)
    model, result, (_, _, x_val, y_val) = train(config, data)
    final_loss, _ = evaluate(model, x_val, y_val)
    assert final_loss == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)
    assert result.best_epoch == result.epochs_run


def test_monitor_val_accuracy_picks_the_most_accurate_epoch(tmp_path: Path) -> None:
    config = fast_config(tmp_path, epochs=6, early_stopping=False, monitor="val_accuracy")
    _, result, _ = train(config, make_dataset(separation=5.0))
    accuracies = [row["val_accuracy"] for row in result.history]
    assert result.best_epoch == int(np.argmax(accuracies)) + 1  # first of ties, like argmax


def test_same_config_and_seed_give_identical_weights(tmp_path: Path) -> None:
    config = fast_config(tmp_path, hidden_sizes=[32, 16], dropout=0.2, epochs=2)
    data = make_dataset()
    first, _, _ = train(config, data)
    second, _, _ = train(config, data)
    other, _, _ = train(config.model_copy(update={"seed": 1}), data)
    for key, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[key]), key
    assert not torch.equal(first.state_dict()["layers.1.weight"],
                           other.state_dict()["layers.1.weight"])


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_every_optimizer_learns(tmp_path: Path, optimizer: str) -> None:
    config = fast_config(tmp_path, optimizer=optimizer, epochs=4, early_stopping=False,
                         learning_rate=0.01 if optimizer == "sgd" else 0.001)
    _, result, _ = train(config, make_dataset())
    assert result.history[-1]["val_accuracy"] > 0.6


def test_schedules_change_the_rate_per_epoch(tmp_path: Path) -> None:
    cosine = fast_config(tmp_path, epochs=4, early_stopping=False, lr_schedule="cosine")
    _, result, _ = train(cosine, make_dataset())
    rates = [row["learning_rate"] for row in result.history]
    assert rates[0] == pytest.approx(1e-3) and rates == sorted(rates, reverse=True)
    step = cosine.model_copy(update={"lr_schedule": "step", "lr_step_epochs": 2})
    _, result, _ = train(step, make_dataset())
    assert [row["learning_rate"] for row in result.history] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4])


def test_divergence_is_a_clear_error(tmp_path: Path) -> None:
    config = fast_config(tmp_path, optimizer="sgd", learning_rate=10.0, l2=100.0, epochs=5)
    with pytest.raises(TrainingError, match=r"training diverged: mean train loss "
                       r"(nan|inf|[0-9.e+]+) in epoch \d exceeds 11 "
                       r"\(divergence_factor 10 x ln 3 classes\); lower "
                       r"learning_rate \(now 10\) or the l1/l2 coefficients"):
        train(config, make_dataset())


def train_val_gap(tmp_path: Path, seed: int, **changes: object) -> float:
    """Train minus validation accuracy after 30 epochs.

    200 real digits from the bundled mnist-5k (no download) for a 512-unit MLP: it fits them
    all, while about a fifth of the 200 held-out digits stay wrong: a real generalization gap.
    """
    full = load_dataset("mnist-5k")
    rows = np.random.default_rng(seed).permutation(len(full.y_train))[:400]
    data = Dataset("mnist-400", full.x_train[rows], full.y_train[rows], full.x_test[:10],
                   full.y_test[:10], full.class_names)
    config = fast_config(tmp_path, hidden_sizes=[512], epochs=30, early_stopping=False,
                         standardize=True, validation_fraction=0.5, seed=seed, **changes)
    model, _, (x_tr, y_tr, x_val, y_val) = train(config, data)
    return evaluate(model, x_tr, y_tr)[1] - evaluate(model, x_val, y_val)[1]


@pytest.mark.slow
def test_l2_narrows_the_train_validation_gap(tmp_path: Path) -> None:
    plain = np.mean([train_val_gap(tmp_path, seed) for seed in (0, 1)])
    regular = np.mean([train_val_gap(tmp_path, seed, l2=0.01) for seed in (0, 1)])
    assert plain > 0.1, f"the plain net should overfit 200 digits, accuracy gap {plain:.3f}"
    assert regular < plain - 0.01, f"accuracy gap {regular:.3f} with l2 vs {plain:.3f} without"


def test_shift_moves_the_whole_image_and_keeps_its_pixels() -> None:
    image = torch.zeros(1, 28, 28)
    image[0, 10:14, 12:15] = 255.0
    generator = torch.Generator().manual_seed(3)
    shifted = shift_images(image.reshape(1, 784), 2, generator).view(1, 28, 28)
    assert shifted.sum() == image.sum()
    rows, cols = torch.nonzero(shifted[0], as_tuple=True)
    dy, dx = int(rows.min()) - 10, int(cols.min()) - 12
    assert max(abs(dy), abs(dx)) <= 2 and (dy, dx) != (0, 0)
    assert torch.equal(shifted, image.roll((dy, dx), dims=(1, 2)))


# /proc/cpuinfo excerpts: an AVX-512 server without BF16 (Cascade Lake), one with it (Zen 4),
# Sapphire Rapids (AMX), an AVX2 laptop, an Arm server with BF16 (Graviton3).
CASCADE_LAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n" * 2
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
LAPTOP = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16 dcpop\n"


@pytest.mark.parametrize(("cpuinfo", "native"), [
    (CASCADE_LAKE, False), (LAPTOP, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True),
    (GRAVITON3, True), ("processor\t: 0\nmodel name\t: unknown\n", None),
])
def test_native_bf16_is_read_from_the_cpu_flags(
    cpuinfo: str, native: bool | None, tmp_path: Path
) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_has_native_bf16(tmp_path / "cpuinfo") is native


def test_no_cpuinfo_means_unknown(tmp_path: Path) -> None:
    assert cpu_has_native_bf16(tmp_path / "missing") is None


@pytest.mark.parametrize(("cpuinfo", "bf16", "warned"), [
    (CASCADE_LAKE, True, True), (ZEN4, True, False), (CASCADE_LAKE, False, False),
    (None, True, False),  # not Linux: nothing to say
])
def test_bf16_on_a_cpu_without_it_warns_at_training_start(
    cpuinfo: str | None, bf16: bool, warned: bool, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    monkeypatch.setattr(fitting, "CPUINFO", path)
    with caplog.at_level(logging.WARNING, logger="training.fit"):
        train(fast_config(tmp_path, epochs=1, bf16=bf16), make_dataset(n_train=64, n_test=8))
    expected = ("bf16=true but this CPU has no native bf16 (avx512_bf16/amx); training may be "
                "slower than fp32; set bf16=false")
    assert [r.getMessage() for r in caplog.records] == ([expected] if warned else [])


def test_flip_mirrors_about_half_the_images_left_right() -> None:
    images = torch.arange(64 * 784, dtype=torch.float32).reshape(64, 784)
    flipped = flip_images(images, torch.Generator().manual_seed(0))
    mirrored = images.view(-1, 28, 28).flip(2).reshape(64, 784)
    same = (flipped == images).all(1)
    mirror = (flipped == mirrored).all(1)
    assert bool((same ^ mirror).all())  # every row is one or the other
    assert 16 < int(mirror.sum()) < 48


def test_label_smoothing_keeps_the_model_from_certainty(tmp_path: Path) -> None:
    """Smoothed targets (0.8 + 0.2/3 on the true class of 3) have a loss floor, their entropy;
    plain cross-entropy on separable rows falls far below it, and the probabilities follow."""
    data = make_dataset(n_train=300)
    floor = -(0.8 + 0.2 / 3) * np.log(0.8 + 0.2 / 3) - 2 * (0.2 / 3) * np.log(0.2 / 3)
    runs = {}
    for smoothing in (0.0, 0.2):
        config = fast_config(tmp_path, epochs=40, early_stopping=False, learning_rate=0.01,
                             label_smoothing=smoothing)
        model, result, (x_tr, *_) = train(config, data)
        with torch.no_grad():
            top = torch.softmax(model(x_tr.float()), 1).max(1).values.mean().item()
        runs[smoothing] = (result.history[-1]["train_loss"], top)
    assert runs[0.0][0] < 0.5 * floor  # plain: near-certain
    assert runs[0.2][0] >= floor - 1e-3  # smoothed: never below the targets' own entropy
    assert runs[0.2][1] < runs[0.0][1] - 0.05
