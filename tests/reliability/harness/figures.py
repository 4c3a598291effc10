"""Numbers each reliability test measured (requests, failures, memory, latencies), printed in
the pytest summary so RELIABILITY.md can quote the last run."""

from __future__ import annotations

FIGURES: dict[str, dict[str, object]] = {}


def record(test: str, **numbers: object) -> None:
    """Remember `numbers` under `test`; a later call adds to or replaces earlier keys."""
    FIGURES.setdefault(test, {}).update(numbers)


def render() -> list[str]:
    """One line per test, in the order the tests ran."""
    return [f"{test}: " + ", ".join(f"{k}={v}" for k, v in numbers.items())
            for test, numbers in FIGURES.items()]
