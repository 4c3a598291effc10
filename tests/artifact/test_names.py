"""Model names and versions: the rules, and properties over random text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifact.names import ArtifactError, check_name, is_name, is_version, parse_version

# Characters that make names interesting: allowed ones, path separators, dots, upper case,
# space, non-ASCII letters and digits.
NAME_CHARS = "abz09._-/\\ AZé²٣\x00"


# Property tests run under load on shared CI machines: no per-example deadline.
PROPERTY = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("name", ["mnist-mlp", "a", "0", "mnist.v2_a", "x" * 64, "a.b", "a-"])
def test_good_names(name: str) -> None:
    assert is_name(name) and check_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "mnist..v2", "a..", ".hidden", "-x", "_x", "Upper",
                                  "a/b", "../etc", "/etc", "a b", "x" * 65, "é", "a\x00"])
def test_bad_names(name: str) -> None:
    assert not is_name(name)
    with pytest.raises(ArtifactError, match=r"^model name .* is invalid: expected "
                                            r"\[a-z0-9\]\[a-z0-9\._-\]\{0,63\} without '\.\.'$"):
        check_name(name)


@pytest.mark.parametrize("text", ["1", "9", "10", "123", "9" * 18])
def test_good_versions(text: str) -> None:
    assert is_version(text) and parse_version(text) == int(text)


@pytest.mark.parametrize("text", ["", "0", "00", "01", "007", "-1", "+1", "1.0", " 1", "1 ",
                                  "²", "٣", "1e3", "../1", "9" * 19, "0x1"])
def test_bad_versions(text: str) -> None:
    assert not is_version(text)
    with pytest.raises(ArtifactError, match="expected a positive integer"):
        parse_version(text)


VALID_LOOKING = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True)


@PROPERTY
@given(st.text(NAME_CHARS, max_size=70) | VALID_LOOKING)
def test_a_valid_name_is_one_plain_folder_name(name: str) -> None:
    """Whatever the text, a name that passes can only name a folder inside the repository."""
    if is_name(name):
        assert 1 <= len(name) <= 64 and name.isascii() and name == name.lower()
        assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
        assert name[0] not in ".-_"


@PROPERTY
@given(st.text("0123456789²٣-+. ", max_size=20) | st.integers(-5, 10**19).map(str))
def test_a_version_is_written_one_way(text: str) -> None:
    """A version folder name is exactly how Python writes that positive int: `01` and `1` can
    never both be version 1, and every number up to 18 digits has its folder name."""
    if is_version(text):
        number = parse_version(text)
        assert number > 0 and str(number) == text and number < 2**63
    elif text.isascii() and text.isdigit() and len(text) <= 18:
        assert int(text) == 0 or text.startswith("0")


@PROPERTY
@given(st.integers(1, 10**18 - 1))
def test_every_version_number_has_its_folder_name(number: int) -> None:
    assert parse_version(str(number)) == number and parse_version(number) == number
