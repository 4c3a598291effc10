"""The committed generated code is what `make grpc-code` makes from the committed .proto."""

from __future__ import annotations

from pathlib import Path

from service.grpc import generate


def test_committed_code_matches_the_proto(tmp_path: Path) -> None:
    for made in generate.generate(tmp_path):
        committed = generate.ROOT / made.relative_to(tmp_path)
        assert made.read_text() == committed.read_text(), (
            f"{committed} is stale: run `make grpc-code` and commit the result")
