"""What a sweep runs: a TOML file naming TrainConfig fields and the values each may take.

A sweep file lists values per field (`[axes]`), optionally adds `[base]` overrides shared by
every trial and hand-picked `[[trials]]` on top. `mode` picks how Optuna walks the axes
(training/sweep/study.py): the full grid, or `samples` draws by TPE or at random.
`seeds = [0, 1, 2]` (grid mode) runs every trial once per seed, so a report can show the
seed-to-seed spread next to each difference it interprets.
Only field *names* are checked here; each trial's values are validated by TrainConfig when the
trial runs, so one bad combination fails that trial, not the whole sweep.
"""

import hashlib
import itertools
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.config import read_toml

Overrides = dict[str, Any]


class SweepError(Exception):
    """A sweep file or option the user must fix; the message says what and where."""


class SweepSpec(BaseModel):
    """The parsed sweep file (see training/configs/sweeps/*.toml for commented examples)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["grid", "tpe", "random"] = "grid"
    samples: int | None = Field(default=None, ge=1)
    seed: int = 0
    seeds: list[int] | None = None
    """Run every trial once per seed (its overrides plus `seed = s`); None: once, with the
    base config's seed, as before this key existed."""
    pruner: Literal["none", "median"] = "none"
    prune_after_trials: int = Field(default=4, ge=0)
    prune_after_epochs: int = Field(default=2, ge=0)
    base: Overrides = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    trials: list[Overrides] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_mode(self) -> "SweepSpec":
        if self.mode != "grid" and self.samples is None:
            raise ValueError(f"mode = '{self.mode}' needs `samples = N` (how many trials to draw)")
        for name, values in self.axes.items():
            if not values:
                raise ValueError(f"axis {name!r} has no values; give at least one")
        if not self.axes and not self.trials:
            raise ValueError("the sweep has no [axes] and no [[trials]]: nothing to run")
        if self.seeds is not None:
            self._check_seeds(self.seeds)
        return self

    def _check_seeds(self, seeds: list[int]) -> None:
        if not seeds:
            raise ValueError("seeds = [] runs nothing; give at least one seed or drop the key")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} repeats a seed; each seed runs every trial once")
        if self.mode != "grid":
            raise ValueError(f"seeds need mode = 'grid': points drawn in mode = '{self.mode}' "
                             "are not repeated per seed")
        if "seed" in self.axes:
            raise ValueError("[axes] has seed and the file has seeds = [...]; use one of them")
        for index, trial in enumerate(self.trials):
            if "seed" in trial:
                raise ValueError(f"[trials[{index}]] sets seed and the file has seeds = [...]; "
                                 "use one of them")


def load_spec(path: Path, fields: Collection[str]) -> SweepSpec:
    """Read and check a sweep TOML; every key must be one of `fields` (TrainConfig's)."""
    raw = read_toml(path, "sweep file", SweepError)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in error.errors()
        )
        raise SweepError(f"sweep file {path}: {problems}") from None
    check_field_names(spec, fields, path)
    return spec


def check_field_names(spec: SweepSpec, fields: Collection[str], path: Path | str) -> None:
    """Reject a name TrainConfig does not have, naming it and the section it is in."""
    sections = [("base", spec.base), ("axes", spec.axes)]
    sections += [(f"trials[{i}]", trial) for i, trial in enumerate(spec.trials)]
    for section, table in sections:
        for name in table:
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise SweepError(
                    f"sweep file {path}: [{section}] has unknown TrainConfig field {name!r}; "
                    f"known fields: {known}"
                )


def expand(spec: SweepSpec) -> list[Overrides]:
    """The trials queued up front: the full grid (grid mode) plus extra trials, duplicates
    dropped, each once per seed of `seeds` (all seeds of one configuration before the next, so
    a study stopped part-way has whole configurations to compare).
    In tpe/random mode only the extra trials: Optuna draws the rest."""
    points: list[Overrides] = []
    if spec.axes and spec.mode == "grid":
        names = list(spec.axes)
        points = [dict(zip(names, combo, strict=True))
                  for combo in itertools.product(*spec.axes.values())]
    unique: dict[str, Overrides] = {}
    for overrides in points + spec.trials:
        unique.setdefault(trial_id(overrides), overrides)
    if spec.seeds is None:
        return list(unique.values())
    return [{**overrides, "seed": seed} for overrides in unique.values() for seed in spec.seeds]


def trial_id(overrides: Mapping[str, Any]) -> str:
    """A stable short id of a trial: the same overrides give the same id in every run.

    A trial that sets `seed` is `<configuration id>-s<seed>`, the configuration id being the id
    of its other overrides: the runs of one configuration share a prefix and sort together.
    """
    if "seed" in overrides:
        rest = {name: value for name, value in overrides.items() if name != "seed"}
        return f"{config_id(rest)}-s{overrides['seed']}"
    return config_id(overrides)


def config_id(overrides: Mapping[str, Any]) -> str:
    """The id of a configuration whatever its seed: 12 hex digits of the overrides' sha256."""
    without_seed = {name: value for name, value in overrides.items() if name != "seed"}
    canonical = json.dumps(without_seed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
