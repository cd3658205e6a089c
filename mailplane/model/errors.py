"""Pydantic validation errors turned into located problems with hints."""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

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


def problems_from(err: ValidationError, root: type[BaseModel], doc: SourceDoc) -> list[YamlProblem]:
    out = []
    for item in err.errors(include_url=False):
        loc = tuple(item["loc"])
        kind, message, hint = item["type"], item["msg"], ""
        at_key = False
        if loc and loc[-1] == "[key]":
            loc, at_key = loc[:-1], True
        if kind == "extra_forbidden":
            at_key = True
            model = model_at(root, loc[:-1])
            if model is not None:
                known = [f.alias or name for name, f in model.model_fields.items()]
                hint = did_you_mean(str(loc[-1]), known)
            message = f"unknown key {loc[-1]!r}"
        elif kind == "missing":
            out.append(doc.problem(loc[:-1], f"missing required key {loc[-1]!r}"))
            continue
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip()]
            message = f"{message}, got {_short(item['input'])}"
            if isinstance(item["input"], str):
                close = did_you_mean(item["input"], options)
                hint = close if close.startswith("did") else ""
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        elif kind in ("date_type", "date_parsing") and isinstance(item["input"], str):
            problem = date_problem(item["input"])
            if problem is None:
                message = f"a date, not text: {_short(item['input'])} is quoted"
                hint = f"remove the quotes: {item['input']}"
            else:
                message = f"{_short(item['input'])} is not a date: {problem}"
                hint = "write YYYY-MM-DD, without quotes"
        elif kind.endswith("_type") or kind in ("greater_than", "greater_than_equal", "less_than",
                                                "less_than_equal", "string_pattern_mismatch",
                                                "too_short", "too_long"):
            message = f"{message}, got {_short(item['input'])}"
            if kind == "string_type" and isinstance(item["input"], bool | int | float):
                hint = "quote the value: YAML read it as a number or a boolean"
        out.append(doc.problem(loc, message, hint, at_key=at_key))
    return out
