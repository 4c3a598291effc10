"""Which folders of a repository are models and versions, and which versions are complete."""

from __future__ import annotations

from pathlib import Path

from artifact.layout import FILES, complete_versions, model_names, version_numbers


def test_version_numbers_skip_everything_but_version_folders(tmp_path: Path) -> None:
    for entry in ("1", "2", "10", "01", "0", "²", ".tmp-3-abc", "latest", "-1"):
        (tmp_path / entry).mkdir()
    (tmp_path / "4").write_text("a file, not a folder")
    assert version_numbers(tmp_path) == [1, 2, 10]
    assert version_numbers(tmp_path / "missing") == []


def test_complete_versions_hold_both_files(tmp_path: Path) -> None:
    for version, files in ((1, FILES), (2, FILES[:1]), (3, ())):
        (tmp_path / str(version)).mkdir()
        for name in files:
            (tmp_path / str(version) / name).write_bytes(b"x")
    assert complete_versions(tmp_path) == [1]


def test_model_names_skip_invalid_folders(tmp_path: Path) -> None:
    for entry in ("b", "a", "Upper", ".hidden", "a..b"):
        (tmp_path / entry).mkdir()
    (tmp_path / "c").write_text("a file")
    assert model_names(tmp_path) == ["a", "b"]
    assert model_names(tmp_path / "missing") == []
