"""TrainConfig: presets load, overrides are typed, unknown or bad keys are named in the error."""

import re
from pathlib import Path

import pytest

from training.config import DEFAULT_PRESET, ConfigError, TrainConfig, load_config, parse_override

PRESETS = sorted(DEFAULT_PRESET.parent.glob("*.toml"))


def test_default_preset_is_mnist_5k() -> None:
    config = load_config()
    assert config.name == "mnist-mlp"
    assert config.data == "mnist-5k"
    assert config.repository == Path("models")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_validates_and_comments_every_key(preset: Path) -> None:
    load_config(preset)
    for line in preset.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"{preset.name}: key without a why-comment: {line!r}"


def test_required_presets_exist() -> None:
    names = {p.name: load_config(p) for p in PRESETS}
    assert names["fashion-mnist.toml"].name == "fashion-mlp"
    assert names["seed.toml"].hidden_sizes == []


def test_overrides_are_parsed_as_toml_and_type_checked() -> None:
    config = load_config(
        None, ["hidden_sizes=[512,256]", "l2=1e-4", "data=fashion-mnist", "early_stopping=false"]
    )
    assert config.hidden_sizes == [512, 256]
    assert config.l2 == pytest.approx(1e-4)
    assert config.data == "fashion-mnist"
    assert config.early_stopping is False


def test_override_with_dashes_and_quoted_string() -> None:
    assert parse_override("--activation='gelu'") == ("activation", "gelu")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hidden_size=[64]", "unknown key 'hidden_size'"),
        ("l2=lots", "l2: Input should be a valid number"),
        ("hidden_sizes=[64,0]", "hidden_sizes.1: Input should be greater than 0"),
        ("activation=swish", "activation: Input should be 'relu', 'tanh', 'sigmoid' or 'gelu'"),
        ("dropout=1.0", "dropout: Input should be less than 1"),
        ("augment_shift_mode=pixel", "augment_shift_mode: Input should be 'batch' or 'image'"),
        ("name=Bad Name", "name: model name 'Bad Name' is invalid: expected [a-z0-9]"),
        ("name=mnist..v2", "name: model name 'mnist..v2' is invalid: expected [a-z0-9]"),
        ("weight_decay=0.01", "weight_decay=0.01 only applies to optimizer 'adamw', got 'adam'"),
        ("nokeyvalue", "override 'nokeyvalue' is not key=value"),
        ("seed=-1", "seed: Input should be greater than or equal to 0 (got -1)"),
        ("seed=4294967296", "seed: Input should be less than or equal to 4294967295"),
    ],
)
def test_bad_override_names_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nlearnin_rate = 0.1\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key 'learnin_rate'"):
        load_config(path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)


def test_config_round_trips_through_json() -> None:
    """The card stores model_dump(mode='json'); it must load back to the same config."""
    config = load_config(None, ["hidden_sizes=[32]", "l1=1e-6"])
    assert TrainConfig.model_validate(config.model_dump(mode="json")) == config
