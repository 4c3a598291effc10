"""Training and the service agree on every model name and version folder, because both ask
artifact/: a name one side accepts the other accepts, and every version training publishes is
one the service lists (and loads as the latest). Before, training accepted `mnist..v2` and
counted a folder `01`, so it could publish a model the service would never load."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import InvalidInput
from service.models.repository import ModelRepository, check_name
from service.settings import parse_model_selection
from training.config import ConfigError, validate_config
from training.publish import PublishError, existing_versions, publish, published_versions

# Property tests run under load on shared CI machines: no per-example deadline.
PROPERTY = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAMES = (st.text("abz09._-/\\ AZé²", max_size=70)
         | st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True))
# Folder names a repository may hold: versions, near-versions, temp folders, anything else.
FOLDERS = st.lists(
    st.text("0123456789²٣.-+ atmp", min_size=1, max_size=20).filter(lambda t: t not in (".", ".."))
    | st.integers(1, 10**19).map(str) | st.integers(1, 99).map(lambda n: f"0{n}"),
    max_size=8, unique=True)


def training_accepts_name(name: str) -> bool:
    try:
        validate_config({"name": name})
    except ConfigError:
        return False
    return True


def service_accepts_name(name: str) -> bool:
    try:
        check_name(name)
    except InvalidInput:
        return False
    return True


def selection_accepts_name(name: str) -> bool:
    """MLP_MODELS=<name> (its commas and colons split entries, so leave those out)."""
    try:
        return parse_model_selection(name) == {name: None}
    except ValueError:
        return False


@pytest.mark.parametrize("name", ["mnist..v2", "a..b", "mnist-mlp", "Bad Name", "x" * 65])
def test_the_names_that_once_split_the_halves(name: str) -> None:
    assert training_accepts_name(name) == service_accepts_name(name)


@PROPERTY
@given(NAMES.filter(lambda n: "," not in n and ":" not in n and n.strip() == n))
def test_both_halves_accept_the_same_names(name: str) -> None:
    accepted = training_accepts_name(name)
    assert service_accepts_name(name) == accepted
    assert selection_accepts_name(name) == accepted


def make_folders(root: Path, name: str, folders: list[str]) -> Path:
    model_dir = root / name
    model_dir.mkdir()
    for folder in folders:
        (model_dir / folder).mkdir()
        (model_dir / folder / "model.onnx").write_bytes(b"onnx")
        (model_dir / folder / "model.json").write_bytes(b"{}")
    return model_dir


def test_a_folder_01_is_no_version_on_either_side(tmp_path: Path) -> None:
    model_dir = make_folders(tmp_path, "m", ["01", "1"])
    assert existing_versions(model_dir) == ModelRepository(tmp_path).versions("m") == [1]


@PROPERTY
@given(FOLDERS)
def test_both_halves_list_the_same_versions(folders: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model_dir = make_folders(root, "m", folders)
        service = ModelRepository(root)
        assert existing_versions(model_dir) == service.versions("m")
        assert published_versions(root, "m") == service.versions("m")


@PROPERTY
@given(FOLDERS.filter(lambda names: all(len(n) < 18 for n in names)))
def test_what_training_publishes_is_the_version_the_service_serves(folders: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_folders(root, "m", folders)
        published = publish(root, "m", lambda version: {"model.onnx": b"x", "model.json": b"{}"})
        service = ModelRepository(root)
        assert int(published.name) in service.versions("m")
        assert service.latest("m") == int(published.name)


def test_training_stops_at_the_highest_version_the_service_reads(tmp_path: Path) -> None:
    make_folders(tmp_path, "m", ["9" * 18])
    with pytest.raises(PublishError, match="holds version 999999999999999999, the highest"):
        publish(tmp_path, "m", lambda version: {"model.onnx": b"x", "model.json": b"{}"})
