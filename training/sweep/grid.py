"""Which trials a sweep runs: a TOML grid expanded in full or sampled at random with a seed.

A sweep file names TrainConfig fields and lists values for each (`[axes]`), optionally adds
`[base]` overrides shared by every trial and hand-picked `[[trials]]` on top of the grid.
Only field *names* are checked here; each trial's values are validated by TrainConfig when the
trial runs, so one bad combination fails that trial, not the whole sweep.
"""

import hashlib
import itertools
import json
import math
import random
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

    mode: Literal["grid", "random"] = "grid"
    samples: int | None = Field(default=None, ge=1)
    seed: int = 0
    base: Overrides = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    trials: list[Overrides] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_mode(self) -> "SweepSpec":
        if self.mode == "random" and self.samples is None:
            raise ValueError("mode = 'random' needs `samples = N` (how many grid points to draw)")
        for name, values in self.axes.items():
            if not values:
                raise ValueError(f"axis {name!r} has no values; give at least one")
        if not self.axes and not self.trials:
            raise ValueError("the sweep has no [axes] and no [[trials]]: nothing to run")
        return self


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


def grid_size(axes: Mapping[str, list[Any]]) -> int:
    """How many points the full grid has (the product of the axis lengths)."""
    return math.prod(len(values) for values in axes.values())


def grid_point(axes: Mapping[str, list[Any]], index: int) -> Overrides:
    """The `index`-th point of the grid in itertools.product order, without building the grid."""
    point: Overrides = {}
    for name, values in reversed(list(axes.items())):
        index, position = divmod(index, len(values))
        point[name] = values[position]
    return {name: point[name] for name in axes}


def expand(spec: SweepSpec) -> list[Overrides]:
    """All trials' overrides: the grid (full or sampled) plus extra trials, duplicates dropped."""
    if not spec.axes:
        points: list[Overrides] = []
    elif spec.mode == "grid":
        names = list(spec.axes)
        points = [dict(zip(names, combo, strict=True))
                  for combo in itertools.product(*spec.axes.values())]
    else:
        total = grid_size(spec.axes)
        picks = random.Random(spec.seed).sample(range(total), min(spec.samples or 0, total))
        points = [grid_point(spec.axes, index) for index in picks]
    unique: dict[str, Overrides] = {}
    for overrides in points + spec.trials:
        unique.setdefault(trial_id(overrides), overrides)
    return list(unique.values())


def trial_id(overrides: Mapping[str, Any]) -> str:
    """A stable short id of a trial: the same overrides give the same id in every run."""
    canonical = json.dumps(overrides, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
