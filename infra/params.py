"""The one way options become a job's parameters (the CLI's and ``python -m serving``'s): the
settings' section, then ``--set KEY=VALUE`` (dotted keys for nested sections:
``teacher.k=10``), then the named options; validated once, with one line per bad field and
no traceback."""

from __future__ import annotations

from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from infra.errors import InputError
from models.validation import messages

M = TypeVar("M", bound=BaseModel)


class ParamsError(InputError):
    """Options that do not make valid parameters (the message names each bad option)."""


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = (
            field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        )
        out += _keys(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"]
    return out


def _set(data: dict, model: type[BaseModel], dotted: str, value) -> None:
    """data[a][b] = value for ``a.b``, after checking the path names a field of ``model``."""
    *parents, leaf = dotted.split(".")
    node, cls = data, model
    for part in parents:
        field = cls.model_fields.get(part)
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            raise ParamsError(f"--set {dotted}: {part!r} is not a section; keys are {', '.join(_keys(model))}")
        node, cls = node.setdefault(part, {}), sub
    if leaf not in cls.model_fields:
        near = [k for k in _keys(model) if k.rsplit(".", 1)[-1] == leaf]
        hint = f"did you mean {' or '.join(near)}?" if near else f"keys are {', '.join(_keys(model))}"
        raise ParamsError(f"--set {dotted}: unknown key; {hint}")
    node[leaf] = value


def build_params(
    model: type[M],
    base: BaseModel | dict,
    sets: list[str] | None = None,
    named: dict[str, object] | None = None,
    flags: dict[str, str] | None = None,
) -> M:
    """``base`` (the settings' section) <- ``--set`` items <- named options that were given (not None;
    keys may be dotted). ``flags``: the option a dotted key came from, when not ``--<key>``.
    Raises ``ParamsError``."""
    data = base.model_dump() if isinstance(base, BaseModel) else dict(base)
    origin: dict[str, str] = {}
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"--set {item!r}: expected KEY=VALUE, e.g. --set teacher.k=10")
        try:
            value = yaml.safe_load(text) if text.strip() else text  # numbers, booleans, [lists], null
        except yaml.YAMLError:
            value = text
        _set(data, model, key.strip(), value)
        origin[key.strip()] = f"--set {key.strip()}"
    for key, value in (named or {}).items():
        if value is not None:
            _set(data, model, key, value)
            origin[key] = (flags or {}).get(key, "--" + key.replace("_", "-"))
    try:
        return model.model_validate(data)
    except ValidationError as e:

        def name(loc: tuple) -> str:
            dotted = ".".join(map(str, loc))
            return origin.get(dotted, dotted)

        raise ParamsError("\n".join(messages(e, name))) from None
