"""Input rules every API schema shares (docs/architecture.md, "HTTP API conventions").

Bad input is a 4xx naming the field, never a 500 from the database: PostgreSQL
refuses NUL characters in text and jsonb, SQLite and PostgreSQL refuse integers
outside 64 bits, and neither stores a lone UTF-16 surrogate or JSON's missing
NaN/Infinity.
"""

from __future__ import annotations

import datetime as dt
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


#: The span an aware datetime of a request may fall in, in UTC: the databases and Python
#: keep years 1 to 9999, and the call policy looks up to two weeks past a given time.
EARLIEST_UTC = dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc)
LATEST_UTC = dt.datetime(9999, 12, 1, tzinfo=dt.timezone.utc)


def aware_in_range(value):
    """``value`` (an aware datetime) in UTC, refused (422) when it has no offset or falls
    near or past the calendar's ends once converted (an ``OverflowError`` or a database error otherwise)."""
    if value is None:
        return value
    if value.utcoffset() is None:
        raise PydanticCustomError("datetime_offset", "give a UTC offset, e.g. 2026-12-01T09:00:00+01:00")
    try:
        utc = value.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST_UTC <= utc <= LATEST_UTC:
        raise PydanticCustomError("datetime_range", "is outside the years 1 to 9999 in UTC")
    return utc


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
