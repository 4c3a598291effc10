"""Bounds on what one inference request may ask for, checked on the decoded JSON before any
big Python object is built from it.

Why: pydantic builds one error object per bad list entry, so a body at the size limit holding
`{"inputs": [1, 1, ...]}` (4 million entries) once grew a worker to 5 GB and never answered;
a shape with a 0 next to 2^63 or more than numpy's 64 dimensions made numpy raise (500); a
repeated output name multiplied the answer. Each limit is far above what a real client of an
[N, 784] model sends and is named in the error.
"""

from __future__ import annotations

from typing import Any

from service.errors import InvalidInput

MAX_TENSORS = 64  # inputs or outputs listed in one request
MAX_PARAMETERS = 64  # keys of one `parameters` object
MAX_DIMS = 8  # dimensions of one tensor shape
MAX_DIM = 2**31 - 1  # one dimension
MAX_ELEMENTS = 2**40  # elements of one tensor (empty dimensions aside)
MAX_DIGITS = 18  # a length header value; more digits cannot be a real body length


def check_request(payload: Any) -> None:
    """Refuse a V2 request (decoded JSON) whose lists or objects are longer than the bounds."""
    if not isinstance(payload, dict):
        return  # pydantic says what is wrong, cheaply
    _check_parameters(payload.get("parameters"), "parameters")
    for key in ("inputs", "outputs"):
        items = payload.get(key)
        if not isinstance(items, list):
            continue
        if len(items) > MAX_TENSORS:
            raise InvalidInput(f"{key}: {len(items)} entries, over the limit of {MAX_TENSORS}; "
                               f"expected a list of tensor objects")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            _check_parameters(item.get("parameters"), f"{key}.{index}.parameters")
            shape = item.get("shape")
            if isinstance(shape, list) and len(shape) > MAX_DIMS:
                raise InvalidInput(f"{key}.{index}.shape: {len(shape)} dimensions, over the "
                                   f"limit of {MAX_DIMS}")


def _check_parameters(parameters: Any, where: str) -> None:
    if isinstance(parameters, dict) and len(parameters) > MAX_PARAMETERS:
        raise InvalidInput(f"{where}: {len(parameters)} keys, over the limit of "
                           f"{MAX_PARAMETERS}")


def element_count(name: str, shape: list[int]) -> int:
    """Elements of a tensor of `shape`, after checking each dimension is 0..MAX_DIM."""
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"input {name!r}: shape has {len(shape)} dimensions, over the limit "
                           f"of {MAX_DIMS}")
    for size in shape:
        if size < 0:
            raise InvalidInput(f"input {name!r}: shape {_short(shape)} has a negative size")
        if size > MAX_DIM:
            raise InvalidInput(f"input {name!r}: shape {_short(shape)} has a dimension of "
                               f"{_short(size)}; each must be at most {MAX_DIM}")
    count = 1
    for size in shape:
        count *= size or 1  # numpy refuses such a shape even when another dimension is 0
    if count > MAX_ELEMENTS:
        raise InvalidInput(f"input {name!r}: shape {_short(shape)} describes {count} elements, "
                           f"over the limit of {MAX_ELEMENTS}")
    return count if all(shape) else 0


def header_number(value: str, header: str) -> int | None:
    """A length header as an int; None when absent or not ASCII digits, 400 when too long."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) > MAX_DIGITS:
        raise InvalidInput(f"{header} is a {len(text)}-digit number; expected the byte length "
                           "of the JSON header")
    return int(text)


def contains_bool(data: Any) -> bool:
    """Whether (nested) list data holds JSON true/false, which numpy would read as 1/0."""
    stack = [data]
    while stack:
        item = stack.pop()
        if type(item) is bool:
            return True
        if type(item) is list:
            stack.extend(item)
    return False


def check_unique_outputs(names: list[str]) -> None:
    """Refuse an output named twice: each copy would be computed and sent again."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"output {_short(name)!r} is requested more than once; list "
                               "each output once")
        seen.add(name)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
