"""Publishing is atomic and numbered: complete versions or nothing, never a shared number."""

import os
import threading
import time
from pathlib import Path

import pytest

from training import publish as publishing
from training.publish import PublishError, existing_versions, publish, published_versions


def files(version: int) -> dict[str, bytes]:
    return {"model.onnx": b"onnx-%d" % version, "model.json": b'{"version": %d}' % version}


def test_versions_count_up_from_one(tmp_path: Path) -> None:
    first = publish(tmp_path, "m", files)
    second = publish(tmp_path, "m", files)
    assert (first, second) == (tmp_path / "m" / "1", tmp_path / "m" / "2")
    assert (second / "model.json").read_bytes() == b'{"version": 2}'
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2"]


def test_failure_between_write_and_rename_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, "m", files)

    def crash(src: object, dst: object) -> None:
        raise RuntimeError("killed after writing, before rename")

    monkeypatch.setattr(publishing.os, "rename", crash)
    with pytest.raises(RuntimeError, match="killed after writing"):
        publish(tmp_path, "m", files)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_failure_while_building_files_leaves_nothing(tmp_path: Path) -> None:
    def broken(version: int) -> dict[str, bytes]:
        raise ValueError("export failed")

    with pytest.raises(ValueError, match="export failed"):
        publish(tmp_path, "m", broken)
    assert list((tmp_path / "m").iterdir()) == []


def test_temp_folders_of_killed_runs_are_ignored_and_cleaned(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    publish(tmp_path, "m", files)
    stale = model_dir / ".tmp-2-abc123"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    old = time.time() - 2 * publishing.STALE_SECONDS
    os.utime(stale, (old, old))
    live = model_dir / ".tmp-2-live99"  # a publisher still writing: must not be touched
    live.mkdir()
    (model_dir / "²").mkdir()  # str.isdigit() says yes, int() says no: must be ignored
    (model_dir / "0").mkdir()  # versions are positive
    (model_dir / "01").mkdir()  # the service ignores it, so training must not count it either
    assert existing_versions(model_dir) == [1]
    assert publish(tmp_path, "m", files) == model_dir / "2"
    assert not stale.exists() and live.exists()


def test_racing_publishers_retry_with_the_next_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher that read an old listing collides on rename and takes the next number."""
    publish(tmp_path, "m", files)
    real = publishing.existing_versions
    answers = iter([[], [1]])  # first look misses version 1, as if it appeared meanwhile
    monkeypatch.setattr(publishing, "existing_versions", lambda d: next(answers, None) or real(d))
    assert publish(tmp_path, "m", files) == tmp_path / "m" / "2"
    assert (tmp_path / "m" / "1" / "model.json").read_bytes() == b'{"version": 1}'
    assert [p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".")] == []


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    start = threading.Barrier(6)
    results: list[Path] = []

    def worker() -> None:
        start.wait()
        results.append(publish(tmp_path, "m", files))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(p.name) for p in results) == [1, 2, 3, 4, 5, 6]
    for folder in results:
        assert (folder / "model.json").read_bytes() == b'{"version": %s}' % folder.name.encode()


def test_unwritable_repository_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PublishError, match=r"cannot create .*file/m"):
        publish(blocker, "m", files)


def test_published_version_is_readable_by_other_users(tmp_path: Path) -> None:
    """The service often runs as another user (containers): 0700 from mkdtemp would lock it out."""
    folder = publish(tmp_path, "m", files)
    assert folder.stat().st_mode & 0o777 == 0o755
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o044 == 0o044, f"{path.name} is not readable by group/others"


def test_published_versions_counts_only_complete_folders_of_that_name(tmp_path: Path) -> None:
    """What --skip-if-published asks: temp, half-made folders and other names don't count."""
    assert published_versions(tmp_path, "m") == []  # no repository at all yet
    model_dir = tmp_path / "m"
    temp = model_dir / ".tmp-1-abc"
    temp.mkdir(parents=True)
    for name, content in files(1).items():
        (temp / name).write_bytes(content)
    (model_dir / "3").mkdir()
    (model_dir / "3" / "model.json").write_bytes(b"{}")  # no model.onnx: not loadable
    publish(tmp_path, "other", files)
    assert published_versions(tmp_path, "m") == []
    assert publish(tmp_path, "m", files) == model_dir / "4"
    assert published_versions(tmp_path, "m") == [4]
