"""Sweep plans: full grids, seeded random samples, extra trials, and rejected field names."""

import itertools
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.sweep.grid import SweepError, expand, grid_point, grid_size, load_spec, trial_id

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


def test_random_mode_draws_distinct_points_and_is_seeded(tmp_path: Path) -> None:
    text = """
        mode = "random"
        samples = 10
        seed = {seed}
        [axes]
        l2 = [0.0, 1e-5, 1e-4]
        dropout = [0.0, 0.2, 0.5]
        activation = ["relu", "tanh", "sigmoid", "gelu"]
    """
    first = expand(load_spec(write(tmp_path, text.format(seed=3)), FIELDS))
    again = expand(load_spec(write(tmp_path, text.format(seed=3)), FIELDS))
    other = expand(load_spec(write(tmp_path, text.format(seed=4)), FIELDS))
    assert first == again
    assert first != other
    assert len({trial_id(t) for t in first}) == 10
    full = list(itertools.product([0.0, 1e-5, 1e-4], [0.0, 0.2, 0.5],
                                  ["relu", "tanh", "sigmoid", "gelu"]))
    assert all((t["l2"], t["dropout"], t["activation"]) in full for t in first)


def test_random_sample_larger_than_the_grid_takes_the_whole_grid(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        mode = "random"
        samples = 50
        [axes]
        dropout = [0.0, 0.2]
        l2 = [0.0, 1e-4]
    """), FIELDS)
    assert len(expand(spec)) == 4


def test_grid_point_matches_itertools_product() -> None:
    axes = {"a": [1, 2, 3], "b": ["x", "y"], "c": [True, False]}
    product = list(itertools.product(*axes.values()))
    assert grid_size(axes) == len(product) == 12
    for index, combo in enumerate(product):
        assert grid_point(axes, index) == dict(zip(axes, combo, strict=True))


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


@pytest.mark.parametrize(("text", "message"), [
    ("[axes]\nhidden_layers = [[64]]", "[axes] has unknown TrainConfig field 'hidden_layers'"),
    ("[base]\nepoch = 3\n[axes]\nl2 = [0.0]", "[base] has unknown TrainConfig field 'epoch'"),
    ("[[trials]]\ndrop_out = 0.2", "[trials[0]] has unknown TrainConfig field 'drop_out'"),
    ("mode = 'random'\n[axes]\nl2 = [0.0]", "mode = 'random' needs `samples = N`"),
    ("mode = 'exhaustive'\n[axes]\nl2 = [0.0]", "mode: Input should be 'grid' or 'random'"),
    ("[axes]\nl2 = []", "axis 'l2' has no values"),
    ("seed = 1", "nothing to run"),
    ("colour = 'red'\n[axes]\nl2 = [0.0]", "colour: Extra inputs are not permitted"),
    ("[axes\n", "is not valid TOML"),
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
