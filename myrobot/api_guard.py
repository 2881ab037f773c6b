"""Answers Django would give /api/ in HTML, given in the API's error envelope.

Two cases never reach a ninja handler: a method a route does not take (ninja
answers a plain-text 405) and a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``
(Django raises ``RequestDataTooBig`` → an HTML 400). The API's rule is one
envelope for every error under /api/: 405 and 413 here.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

from myrobot.middleware import DualModeMiddleware

API_PREFIX = "/api/"


def _envelope(status: int, detail: str, field: str | None = None) -> JsonResponse:
    errors = [{"field": field, "message": detail}] if field else []
    return JsonResponse({"detail": detail, "errors": errors}, status=status)


def too_large_response() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return _envelope(413, f"The request body is larger than {limit} bytes.", "body")


def _before(request):
    if not request.path.startswith(API_PREFIX):
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return too_large_response()
    return None


def _after(request, response):
    if (
        response.status_code == 405
        and request.path.startswith(API_PREFIX)
        and not response.get("Content-Type", "").startswith("application/json")
    ):
        allowed = response.get("Allow", "")
        enveloped = _envelope(405, f"Method {request.method} is not allowed here; use {allowed}.")
        enveloped["Allow"] = allowed
        return enveloped
    return response


class ApiEnvelopeMiddleware(DualModeMiddleware):
    """Runs inline on the event loop under ASGI (no thread hop: it touches no database)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.adopt_mode(get_response)

    def sync_call(self, request):
        return _before(request) or _after(request, self.get_response(request))

    async def __acall__(self, request):
        early = _before(request)
        if early is not None:
            return early
        return _after(request, await self.get_response(request))


__all__ = ["ApiEnvelopeMiddleware", "too_large_response"]
