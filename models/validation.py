"""Readable messages for a pydantic ``ValidationError``: one line per field, named the way
the user gave it (a flag, a --set key), never a traceback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_CTX_KEY = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}


def _number(v: object) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _text(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {_number(ctx[_CTX_KEY[kind]])}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {err.get('input')!r}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known setting"
    return ": " + str(err["msg"]).removeprefix("Value error, ")


def messages(
    exc: ValidationError, name: Callable[[tuple[Any, ...]], str] = lambda loc: ".".join(map(str, loc))
) -> list[str]:
    """``name(loc)``: how the user refers to the field at ``loc`` (e.g. ``--max-steps``)."""
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not isinstance(p, int))
        text = _text(err)
        if not loc:
            out.append(text.removeprefix(": "))
        else:
            out.append(f"{name(loc)}{text}" if text.startswith(":") else f"{name(loc)} {text}")
    return out
