"""Pydantic validation errors turned into located problems with hints."""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mailplane.model.checks import did_you_mean
from mailplane.model.dates import date_problem
from mailplane.model.problems import YamlProblem
from mailplane.model.source import SourceDoc


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
            if len(args) != 1:
                return tp
        else:
            return tp


def model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc``, walking field annotations."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or name: f for name, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_GOT_VALUE_KINDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_pattern_mismatch",
                    "too_short", "too_long")
"""Besides every ``*_type`` error: the kinds whose message is only useful with the value that failed beside it."""


def _unknown_key(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[str, str]:
    """An extra key: the hint is the closest key the enclosing model knows, a likely misspelling."""
    model = model_at(root, loc[:-1])
    hint = ""
    if model is not None:
        known = [f.alias or name for name, f in model.model_fields.items()]
        hint = did_you_mean(str(loc[-1]), known)
    return f"unknown key {loc[-1]!r}", hint


def _literal(item: ErrorDetails) -> tuple[str, str]:
    """A value outside a fixed set: pydantic lists the options in one string, parsed back for the suggestion."""
    expected = item.get("ctx", {}).get("expected", "")
    options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip()]
    message, hint = f"{item['msg']}, got {_short(item['input'])}", ""
    if isinstance(item["input"], str):
        close = did_you_mean(item["input"], options)
        hint = close if close.startswith("did") else ""
    return message, hint


def _date(text: str) -> tuple[str, str]:
    """A date given as text: either quoted (YAML would have read it as a date) or not a date at all."""
    problem = date_problem(text)
    if problem is None:
        return f"a date, not text: {_short(text)} is quoted", f"remove the quotes: {text}"
    return f"{_short(text)} is not a date: {problem}", "write YYYY-MM-DD, without quotes"


def _got_value(kind: str, item: ErrorDetails) -> tuple[str, str]:
    """A wrong type or an out-of-range value: the value itself is shown, and a number where text was wanted is
    most often YAML reading an unquoted value."""
    hint = ""
    if kind == "string_type" and isinstance(item["input"], bool | int | float):
        hint = "quote the value: YAML read it as a number or a boolean"
    return f"{item['msg']}, got {_short(item['input'])}", hint


def _message_and_hint(kind: str, item: ErrorDetails) -> tuple[str, str]:
    """Pydantic's message for a value, reworded per kind of error; kinds without a rewording keep it as is."""
    if kind == "literal_error":
        return _literal(item)
    if kind == "value_error":
        return item["msg"].removeprefix("Value error, "), ""
    if kind in ("date_type", "date_parsing") and isinstance(item["input"], str):
        return _date(item["input"])
    if kind.endswith("_type") or kind in _GOT_VALUE_KINDS:
        return _got_value(kind, item)
    return item["msg"], ""


def problems_from(err: ValidationError, root: type[BaseModel], doc: SourceDoc) -> list[YamlProblem]:
    out = []
    for item in err.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        at_key = False
        if loc and loc[-1] == "[key]":
            loc, at_key = loc[:-1], True
        if kind == "missing":
            out.append(doc.problem(loc[:-1], f"missing required key {loc[-1]!r}"))
            continue
        if kind == "extra_forbidden":
            at_key = True
            message, hint = _unknown_key(loc, root)
        else:
            message, hint = _message_and_hint(kind, item)
        out.append(doc.problem(loc, message, hint, at_key=at_key))
    return out
