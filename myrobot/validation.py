"""Input rules every API schema shares (docs/architecture.md, "HTTP API conventions").

Bad input is a 4xx naming the field, never a 500 from the database: PostgreSQL
refuses NUL characters in text and jsonb, SQLite and PostgreSQL refuse integers
outside 64 bits, and neither stores a lone UTF-16 surrogate or JSON's missing
NaN/Infinity.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from ninja import Schema
from ninja.parser import Parser
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

INT64_MAX = 2**63 - 1
#: An integer the database can hold (query filters, ids in bodies and paths).
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
#: A database id: positive and 64-bit.
Id = Annotated[int, Field(ge=1, le=INT64_MAX)]


def storable_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` (a string or a JSON value) cannot be stored, or None."""
    if depth > 32:
        return "is nested too deeply (at most 32 levels)"
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (no lone surrogates)"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = storable_problem(key, depth + 1) or storable_problem(item, depth + 1)
            if problem:
                return problem
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = storable_problem(item, depth + 1)
            if problem:
                return problem
    return None


def check_storable(value):
    problem = storable_problem(value)
    if problem:
        raise PydanticCustomError("not_storable", problem)
    return value


class StrictSchema(Schema):
    """A Schema whose every field refuses what the database cannot store (422)."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value):
        return check_storable(value)


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads_strict(raw):
    """``json.loads`` without NaN/Infinity (not JSON, and no database stores them)."""
    value = json.loads(raw, parse_constant=_refuse_constant)
    problem = storable_problem(value) if _has_non_finite(value) else None
    if problem:
        raise ValueError(problem)
    return value


def _has_non_finite(value, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(value, float):
        return not math.isfinite(value)  # 1e400 parses as inf
    if isinstance(value, dict):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False


class StrictJsonParser(Parser):
    """Request bodies: strict JSON (a body with NaN is unparseable → 400)."""

    def parse_body(self, request):
        return loads_strict(request.body)
