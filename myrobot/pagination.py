"""The API's lists: django-ninja's own limit/offset pagination, with ``offset`` bounded.

A list route declares ``response={200: list[ItemOut], **errors(401, 422)}``,
is decorated with ``ninja.pagination.paginate`` and returns its queryset
(ordered, relations selected); django-ninja answers ``{"items": [...], "count": N}``
with one COUNT and one page query (docs/architecture.md, "HTTP API
conventions"). ``settings.NINJA_PAGINATION_CLASS`` names the class below, so a
bare ``@paginate`` uses it. Where an item is shaped by a function rather than
read off the model, the item schema calls that function on the model instance
(e.g. ``calls.api.CallOut``): a ``model_validator(mode="wrap")``, because
ninja's Schema wraps its input for attribute access in a wrap validator of its
own, which runs before any ``mode="before"`` one.

Why a subclass and not ``ninja.pagination.LimitOffsetPagination`` itself:

* **The 64-bit bound.** The library's ``offset`` has no upper bound; SQLite
  and PostgreSQL refuse an OFFSET outside 64 bits, so ``?offset=2**63`` was a
  500 (found by schemathesis). Here it is a 422 naming ``offset``, like every
  other integer the API takes (``myrobot.validation``).
* **The documented errors.** A schemathesis run accepts only the statuses and
  bodies the OpenAPI schema documents. With the bound, a bad ``limit`` or
  ``offset`` is the 422 error envelope naming the field, which each list
  route documents with ``errors(401, 422)``; ``paginate`` replaces only the
  200 entry of ``response=`` with its paged schema and leaves those 4xx
  entries as declared. The bounds themselves show in the schema's
  parameters (``PageParams`` below keeps the component's name).

Nothing else differs from the library: the same defaults and maximum
(``NINJA_PAGINATION_PER_PAGE``, ``NINJA_PAGINATION_MAX_LIMIT``) and the same
queries.

A module with a paginated route that takes other query parameters
(``filters: Query[...]``) must not use ``from __future__ import annotations``:
``paginate`` wraps the view, and django-ninja resolves string annotations in
the wrapper's module (ninja.pagination), where the filter schema is unknown.
"""

from ninja import Field, Schema
from ninja.conf import settings as ninja_settings
from ninja.pagination import LimitOffsetPagination

from .validation import INT64_MAX


class PageParams(Schema):
    """``?limit=&offset=``."""

    limit: int = Field(
        ninja_settings.PAGINATION_PER_PAGE,
        ge=1,
        le=ninja_settings.PAGINATION_MAX_LIMIT,
        description=f"At most {ninja_settings.PAGINATION_MAX_LIMIT}.",
    )
    offset: int = Field(0, ge=0, le=INT64_MAX, description="At most 2**63 - 1 (the databases' 64-bit OFFSET).")


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    Input = PageParams
