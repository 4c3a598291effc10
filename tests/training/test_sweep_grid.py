"""Sweep plans: full grids, sampled modes, extra trials, and rejected field names."""

import itertools
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.sweep.cli import PLACEMENT_FIELDS
from training.sweep.grid import SweepError, config_id, expand, load_spec, trial_id

FIELDS = TrainConfig.model_fields
ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_grid_mode_expands_the_full_product_in_order(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        [axes]
        hidden_sizes = [[], [64], [64, 64]]
        activation = ["relu", "tanh"]
    """), FIELDS)
    trials = expand(spec)
    assert trials == [
        {"hidden_sizes": h, "activation": a}
        for h, a in itertools.product([[], [64], [64, 64]], ["relu", "tanh"])
    ]


@pytest.mark.parametrize("mode", ["tpe", "random"])
def test_sampled_modes_queue_only_the_extra_trials(tmp_path: Path, mode: str) -> None:
    """Optuna's sampler draws the rest (training/sweep/study.py)."""
    spec = load_spec(write(tmp_path, f"""
        mode = "{mode}"
        samples = 10
        [axes]
        dropout = [0.0, 0.2, 0.5]
        [[trials]]
        dropout = 0.3
    """), FIELDS)
    assert expand(spec) == [{"dropout": 0.3}]


def test_extra_trials_are_added_and_duplicates_dropped(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        [axes]
        dropout = [0.0, 0.2]
        [[trials]]
        dropout = 0.2
        [[trials]]
        hidden_sizes = [512, 256]
        dropout = 0.3
    """), FIELDS)
    assert expand(spec) == [{"dropout": 0.0}, {"dropout": 0.2},
                            {"hidden_sizes": [512, 256], "dropout": 0.3}]


def test_trial_id_is_stable_and_ignores_key_order() -> None:
    assert trial_id({"l2": 1e-4, "dropout": 0.2}) == trial_id({"dropout": 0.2, "l2": 1e-4})
    assert trial_id({"l2": 1e-4}) != trial_id({"l2": 1e-5})
    assert trial_id({"hidden_sizes": [64]}) != trial_id({"hidden_sizes": [64, 64]})
    assert len(trial_id({})) == 12


def test_seeds_run_every_trial_once_per_seed_configuration_by_configuration(
    tmp_path: Path,
) -> None:
    spec = load_spec(write(tmp_path, """
        seeds = [0, 1, 2]
        [axes]
        dropout = [0.0, 0.2]
        [[trials]]
        hidden_sizes = [512]
    """), FIELDS)
    assert expand(spec) == [
        {"dropout": 0.0, "seed": 0}, {"dropout": 0.0, "seed": 1}, {"dropout": 0.0, "seed": 2},
        {"dropout": 0.2, "seed": 0}, {"dropout": 0.2, "seed": 1}, {"dropout": 0.2, "seed": 2},
        {"hidden_sizes": [512], "seed": 0}, {"hidden_sizes": [512], "seed": 1},
        {"hidden_sizes": [512], "seed": 2},
    ]


def test_without_seeds_the_trials_and_their_ids_are_as_before(tmp_path: Path) -> None:
    """No `seeds` key: every trial once with the base seed, ids unchanged (resumable)."""
    spec = load_spec(write(tmp_path, "[[trials]]\nhidden_sizes = []\n"), FIELDS)
    assert expand(spec) == [{"hidden_sizes": []}]
    # the id the 2026 study recorded for softmax regression (docs/hidden-layers.md)
    assert trial_id({"hidden_sizes": []}) == "946099dd775e"


def test_seeded_trial_id_is_its_configuration_id_plus_the_seed() -> None:
    base = trial_id({"hidden_sizes": [512], "l2": 1e-4})
    assert trial_id({"l2": 1e-4, "seed": 2, "hidden_sizes": [512]}) == f"{base}-s2"
    assert config_id({"hidden_sizes": [512], "l2": 1e-4, "seed": 7}) == base
    assert trial_id({"hidden_sizes": [512], "seed": 0}) != trial_id({"l2": 1e-4, "seed": 0})


@pytest.mark.parametrize(("text", "message"), [
    ("[axes]\nhidden_layers = [[64]]", "[axes] has unknown TrainConfig field 'hidden_layers'"),
    ("[base]\nepoch = 3\n[axes]\nl2 = [0.0]", "[base] has unknown TrainConfig field 'epoch'"),
    ("[[trials]]\ndrop_out = 0.2", "[trials[0]] has unknown TrainConfig field 'drop_out'"),
    ("mode = 'random'\n[axes]\nl2 = [0.0]", "mode = 'random' needs `samples = N`"),
    ("mode = 'exhaustive'\n[axes]\nl2 = [0.0]", "mode: Input should be 'grid', 'tpe' or 'random'"),
    ("[axes]\nl2 = []", "axis 'l2' has no values"),
    ("seed = 1", "nothing to run"),
    ("colour = 'red'\n[axes]\nl2 = [0.0]", "colour: Extra inputs are not permitted"),
    ("[axes\n", "is not valid TOML"),
    ("seeds = []\n[axes]\nl2 = [0.0]", "seeds = [] runs nothing"),
    ("seeds = [1, 1]\n[axes]\nl2 = [0.0]", "repeats a seed"),
    ("mode = 'tpe'\nsamples = 3\nseeds = [0, 1]\n[axes]\nl2 = [0.0]",
     "seeds need mode = 'grid'"),
    ("seeds = [0, 1]\n[axes]\nseed = [3, 4]", "[axes] has seed and the file has seeds"),
    ("seeds = [0, 1]\n[[trials]]\nl2 = 0.0\n[[trials]]\nseed = 3",
     "[trials[1]] sets seed and the file has seeds"),
])
def test_bad_sweep_files_are_rejected_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SweepError) as raised:
        load_spec(write(tmp_path, text), FIELDS)
    assert message in str(raised.value)
    assert str(tmp_path / "sweep.toml") in str(raised.value)


def test_missing_sweep_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="does not exist"):
        load_spec(tmp_path / "nope.toml", FIELDS)


def test_shipped_presets_load() -> None:
    presets = sorted((ROOT / "training" / "configs" / "sweeps").glob("*.toml"))
    assert presets, "no sweep presets shipped"
    for path in presets:
        assert expand(load_spec(path, FIELDS)), path


def test_shipped_sweeps_pin_every_setting_that_changes_a_result() -> None:
    """A preset may change later (mnist-5k gained augment_shift = 2 after the study ran); a sweep
    file that names every field measures the same thing whatever the preset says."""
    for path in sorted((ROOT / "training" / "configs" / "sweeps").glob("*.toml")):
        spec = load_spec(path, FIELDS)
        unpinned = set(FIELDS) - set(spec.base) - PLACEMENT_FIELDS
        assert not unpinned, f"{path.name} [base] leaves {sorted(unpinned)} to the preset"
