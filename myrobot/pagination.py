"""`?limit=&offset=` → `{"items": [...], "count": N}` (docs/architecture.md, "HTTP API conventions")."""

from typing import Generic, TypeVar

from ninja import Schema
from pydantic import Field

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(Schema, Generic[T]):
    items: list[T]
    count: int


class PageParams(Schema):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"At most {MAX_LIMIT}.")
    offset: int = Field(0, ge=0, le=2**63 - 1)  # the databases' 64-bit OFFSET


def paginate(queryset, params: PageParams) -> dict:
    """One COUNT and one page query; the queryset should already select its relations."""
    count = queryset.count()
    items = list(queryset[params.offset : params.offset + params.limit])
    return {"items": items, "count": count}
