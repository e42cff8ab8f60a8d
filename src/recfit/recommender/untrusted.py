"""Reading untrusted JSON: finite numbers, integers within int64, bounded nesting, and
validation against a strict schema with messages that name the file and the field.

Every JSON document of a bundle (and the JSON inside its safetensors headers) is read
through :func:`parse_json` and checked with :func:`validate_doc`; any problem is a
:class:`~recfit.errors.BundleError`.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recfit._fs import read_plain_file
from recfit.errors import BundleError

__all__ = [
    "INT64",
    "MAX_JSON_DEPTH",
    "Count",
    "Int64",
    "StrictDoc",
    "parse_json",
    "read_json",
    "short",
    "short_exc",
    "validate_doc",
]

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a bundle's JSON."""
INT64 = (-(1 << 63), (1 << 63) - 1)
"""The range of an int64: the only integers a bundle's JSON may hold."""


class _Rejected(ValueError):
    def __init__(self, expected: str, received: str) -> None:
        super().__init__(expected, received)
        self.expected, self.received = expected, received


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not INT64[0] <= (v := int(text)) <= INT64[1]:
        raise _Rejected("integers within int64", text if len(text) <= 24 else text[:24] + "...")
    return v


def _parse_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _Rejected("finite numbers", text if len(text) <= 24 else text[:24] + "...")
    return v


def _parse_constant(text: str) -> Any:
    raise _Rejected("finite numbers", text)


def _check_depth(value: Any, where: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        if depth > MAX_JSON_DEPTH:
            raise BundleError(
                f"expected JSON nested at most {MAX_JSON_DEPTH} deep in {where}, received "
                "deeper nesting"
            )
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def parse_json(data: bytes | str, where: str) -> Any:
    """Parse untrusted JSON: finite numbers only, integers within int64, nesting at most
    :data:`MAX_JSON_DEPTH` deep.

    Raises:
        BundleError: invalid UTF-8 or JSON, or any of the above, naming ``where``.

    Example:
        >>> parse_json(b'{"a": [1, 2.5]}', "x.json")
        {'a': [1, 2.5]}
        >>> parse_json(b'[NaN]', "x.json")
        Traceback (most recent call last):
        recfit.errors.BundleError: expected finite numbers in x.json, received NaN
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
        )
    except _Rejected as exc:
        raise BundleError(f"expected {exc.expected} in {where}, received {exc.received}") from None
    except RecursionError:
        raise BundleError(
            f"expected JSON nested at most {MAX_JSON_DEPTH} deep in {where}, received deeper "
            "nesting"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"expected valid JSON in {where}, received: {exc}") from None
    _check_depth(value, where)
    return value


def read_json(folder: Path, name: str, *, max_bytes: int | None = None) -> Any:
    """Parse the plain file ``folder/name`` with :func:`parse_json`.

    Raises:
        BundleError: the file is missing, not a plain file inside ``folder``, or not
            acceptable JSON.
    """
    return parse_json(read_plain_file(folder, name, max_bytes=max_bytes), str(folder / name))


# ------------------------------------------------------------------ schemas
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = (
    60, 60, 4, 4, 2
)  # fmt: skip


def short(value: Any) -> str:
    """A short ``repr`` of an untrusted value, for messages.

    Example:
        >>> short("x" * 100)[:10]
        "'xxxxxxxxx"
    """
    return _SHORT.repr(value)


Int64 = Annotated[int, Field(ge=INT64[0], le=INT64[1])]
Count = Annotated[int, Field(ge=0, le=INT64[1])]


class StrictDoc(BaseModel):
    """A schema that rejects unknown keys, coercions, NaN and infinity; frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


M = TypeVar("M", bound=StrictDoc)


def validate_doc(doc: type[M], value: Any, where: str) -> M:
    """``value`` validated against the schema ``doc``.

    Raises:
        BundleError: naming ``where``, the first offending field, what it expected and
            what it received.
    """
    try:
        return doc.model_validate(value)
    except ValidationError as exc:
        errs = exc.errors(include_url=False)
        e = errs[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
        msg = str(e["msg"])
        msg = msg[:1].lower() + msg[1:]
        got = short(e.get("input"))
        raise BundleError(
            f"expected field {loc!r} of {where} to satisfy: {msg}; received {got}{more}"
        ) from None


def short_exc(exc: BaseException) -> str:
    """The type and the first 300 characters of an exception, for messages."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
