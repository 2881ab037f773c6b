"""The one NinjaAPI at /api/, with DESIGN.md's error envelope everywhere.

Every error answers `{"detail": "<for a person>", "errors": [{"field", "message"}]}`.
"""

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from calls.api import router as calls_router
from campaigns.api import router as campaigns_router
from organizations.api import router as organizations_router
from patients.api import router as patients_router

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


_WRAPPERS = ("body", "query", "path", "header", "payload", "data", "filters", "page")


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


api.add_router("/", organizations_router)
api.add_router("/", patients_router)
api.add_router("/", calls_router)
api.add_router("/", campaigns_router)
