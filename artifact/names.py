"""Model names and version numbers: which folder names of a repository are models and versions.

A name is a plain folder name (`[a-z0-9][a-z0-9._-]{0,63}`, never `..`), so it can never point
outside the repository. A version is a positive integer written in ASCII digits without sign or
leading zeros (`[1-9][0-9]{0,17}`, below 2**63): exactly one folder name per number, so `01`
and `1` can never both be version 1.
"""

from __future__ import annotations

import re

NAME_RULE = "[a-z0-9][a-z0-9._-]{0,63} without '..'"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")  # [0-9] is ASCII only, unlike str.isdigit()


class ArtifactError(ValueError):
    """A name, version, card or model file that breaks the contract; the message says which
    rule, so each half can put it in its own one-line error."""


def is_name(text: str) -> bool:
    """Whether `text` is a valid model name."""
    return _NAME.fullmatch(text) is not None and ".." not in text


def is_version(text: str) -> bool:
    """Whether `text` is a version as a folder name (or in a URL) writes it."""
    return _VERSION.fullmatch(text) is not None


def check_name(name: str) -> str:
    """`name` itself, or ArtifactError naming the rule."""
    if not is_name(name):
        raise ArtifactError(f"model name {name!r} is invalid: expected {NAME_RULE}")
    return name


def parse_version(text: str | int) -> int:
    """The version number of `text` (a folder name, a URL segment or an int), or ArtifactError."""
    value = str(text)
    if not is_version(value):
        raise ArtifactError(f"model version {value!r} is invalid: expected a positive integer")
    return int(value)
