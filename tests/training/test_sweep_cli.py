"""Sweep folders: a re-run resumes only the same study, and new config fields do not block it."""

import json
from pathlib import Path

import pytest

from training.config import TrainConfig
from training.sweep.cli import changed_fields, claim_folder, sweep_id
from training.sweep.grid import SweepError

BASE = TrainConfig().model_dump(mode="json")


def test_placement_fields_and_new_default_fields_do_not_change_the_study() -> None:
    stored = {k: v for k, v in BASE.items() if k != "l1"}  # as if `l1` were added later
    moved = {**BASE, "runs_dir": "elsewhere", "threads": 1, "repository": "other"}
    assert changed_fields(stored, moved) == []
    assert sweep_id("s", BASE) == sweep_id("s", moved)


def test_changed_values_are_named() -> None:
    assert changed_fields(BASE, {**BASE, "epochs": 3, "l2": 1e-4}) == ["epochs", "l2"]
    assert changed_fields({**BASE, "l1": 1e-5}, BASE) == ["l1"]  # stored non-default, now default
    assert sweep_id("s", BASE) != sweep_id("s", {**BASE, "epochs": 3})


def test_claim_folder_keeps_the_first_id_and_refuses_another_study(tmp_path: Path) -> None:
    first = {"sweep_id": "s-1", "base": BASE}
    assert claim_folder(tmp_path, first) == "s-1"
    assert claim_folder(tmp_path, {"sweep_id": "s-2", "base": {**BASE, "threads": 4}}) == "s-1"
    with pytest.raises(SweepError, match=r"holds sweep s-1 with another base config \(epochs"):
        claim_folder(tmp_path, {"sweep_id": "s-3", "base": {**BASE, "epochs": 3}})
    assert json.loads((tmp_path / "sweep.json").read_text())["sweep_id"] == "s-1"


def test_report_only_refuses_a_folder_without_a_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main

    grid = tmp_path / "s.toml"
    grid.write_text("[[trials]]\nhidden_sizes = []\n")
    out = tmp_path / "out"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--report-only"]) == 1
    message = capsys.readouterr().err.strip()
    assert message == (f"mlp-train sweep: error: --report-only: {out} holds no sweep yet "
                       "(no sweep.json); run the sweep first")
    assert not out.exists()
