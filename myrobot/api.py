"""The one NinjaAPI at /api/, with one error envelope everywhere.

Every error answers `{"detail": "<for a person>", "errors": [{"field", "message"}]}`.
"""

import functools

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from calls.api import router as calls_router
from calls.bot_api import router as bot_router
from campaigns.api import router as campaigns_router
from organizations.api import router as organizations_router
from patients.api import router as patients_router
from webhooks.api import router as webhooks_router

from .api_guard import too_large_response
from .errors import ApiError
from .validation import StrictJsonParser


api = NinjaAPI(
    title="MyRobot API",
    version="1.0.0",
    description=(
        "Start calls, read their results and keep patients in sync from an EHR. "
        "Authenticate with `Authorization: Bearer <organisation API key>`."
    ),
    urls_namespace="api",
    parser=StrictJsonParser(),
)


def envelope(request, status: int, detail: str, errors: list[dict] | None = None):
    return api.create_response(request, {"detail": detail, "errors": errors or []}, status=status)


_WRAPPERS = ("body", "query", "path", "header", "payload", "data", "filters")


def _field_of(loc) -> str:
    """The field's name for a person: ninja's wrappers (the location, the
    parameter's name) dropped from the front, never the field itself."""
    parts = [str(p) for p in loc]
    while len(parts) > 1 and parts[0] in _WRAPPERS:
        parts.pop(0)
    return ".".join(parts)


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    errors = []
    for err in exc.errors:
        loc = err.get("loc", ())
        field = _field_of(loc[1:] if len(loc) > 1 and loc[0] in ("body", "query", "path", "header") else loc)
        errors.append({"field": field, "message": err.get("msg", "invalid")})
    names = ", ".join(e["field"] for e in errors)
    return envelope(request, 422, f"Invalid request: check {names}.", errors)


@api.exception_handler(ApiError)
def on_api_error(request, exc: ApiError):
    return envelope(request, exc.status, exc.detail, exc.errors)


@api.exception_handler(AuthenticationError)
def on_auth_error(request, exc):
    return envelope(
        request, 401, "Missing, unknown or revoked API key: send `Authorization: Bearer <API key>`."
    )


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    detail = str(exc)
    if exc.status_code == 400 and detail.startswith("Cannot parse request body"):
        detail = "The request body is not valid JSON."
    return envelope(request, exc.status_code, detail)


@api.exception_handler(RequestDataTooBig)
def on_too_large(request, exc):
    """A body without Content-Length that grew over the limit (myrobot.api_guard has the rest)."""
    return too_large_response()


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return envelope(request, 404, str(exc) or "Not found.")


# Seconds a client should wait before retrying while a dependency is down.
RETRY_AFTER_S = 5


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_dependency_down(request, exc: DatabaseError):
    """The database is unreachable: nothing was done; the client may retry (503, not a 500 page)."""
    import logging

    logging.getLogger(__name__).warning("database unavailable for %s: %s", request.path, exc)
    response = envelope(
        request, 503, "The service is temporarily unavailable (database unreachable); nothing was done. Retry shortly."
    )
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


api.add_router("/", organizations_router)
api.add_router("/", patients_router)
api.add_router("/", calls_router)
api.add_router("/", webhooks_router)
api.add_router("/", campaigns_router)
api.add_router("/", bot_router)


# --- unknown query parameters: 422, never silently ignored ---------------------------
#
# A GET that names a parameter the route does not take (`?outcom=confirmed`)
# would otherwise answer as if unfiltered. Two hooks, so the key is checked
# first (401 before 422): the view-level one reads what the route accepts from
# ninja's own parameter models; the operation-level one, run after
# authentication and validation, refuses.


def _query_names(operation) -> frozenset[str]:
    names = set()
    for model in getattr(operation, "models", []):
        if getattr(model, "__ninja_param_source__", None) == "query":
            # The names a client sends (aliases, flattened out of Query[Schema]).
            names.update(getattr(model, "__ninja_flatten_map__", {}) or {})
    return frozenset(names)


def _note_unknown_query(run):
    operation = getattr(run, "__self__", None)
    allowed = _query_names(operation) if operation is not None else None

    def wrapper(request, *args, **kwargs):
        if allowed is not None and request.method == "GET":
            unknown = sorted(set(request.GET) - allowed)
            if unknown:
                request._unknown_query = (unknown, sorted(allowed))
        return run(request, *args, **kwargs)

    return wrapper


def _refuse_unknown_query(view_func):
    @functools.wraps(view_func)
    def wrapper(request, *args, **kwargs):
        noted = getattr(request, "_unknown_query", None)
        if noted:
            unknown, allowed = noted
            known = ", ".join(allowed) or "none"
            raise ApiError(
                422,
                f"Unknown query parameter(s): {', '.join(unknown)}. This route takes: {known}.",
                [{"field": name, "message": "Unknown query parameter."} for name in unknown],
            )
        return view_func(request, *args, **kwargs)

    return wrapper


api.add_decorator(_note_unknown_query, mode="view")
api.add_decorator(_refuse_unknown_query, mode="operation")

UNKNOWN_QUERY_RESPONSE = {
    "description": "A query parameter is invalid, or is not one this route takes.",
    "content": {"application/json": {"example": {
        "detail": "Unknown query parameter(s): outcom. This route takes: limit, offset, outcome, status, …",
        "errors": [{"field": "outcom", "message": "Unknown query parameter."}],
    }}},
}


def _document_unknown_query(routers) -> None:
    """Every GET documents its 422 (set before the routers are bound, which copies operations)."""
    for router in routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                if "GET" in operation.methods:
                    extra = dict(operation.openapi_extra or {})
                    responses = dict(extra.get("responses") or {})
                    responses.setdefault(422, UNKNOWN_QUERY_RESPONSE)
                    extra["responses"] = responses
                    operation.openapi_extra = extra


_document_unknown_query([organizations_router, patients_router, calls_router, webhooks_router, campaigns_router, bot_router])
