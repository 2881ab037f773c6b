"""Django's middleware, run on the event loop under ASGI.

``settings.MIDDLEWARE`` names Django's (and WhiteNoise's and django-csp's)
classes, so ``check --deploy`` and the WSGI/test client see exactly those. Under
ASGI, though, Django runs each hook of a ``MiddlewareMixin`` through
``sync_to_async`` (a thread switch per hook, about sixteen per request with the
list in settings), and WhiteNoise is sync-only (two more switches and a new
thread per request). Measured with ``bench/`` on a quiet machine that cost about
6 ms of a dial-in webhook's response time and of the caller's hold time, twice
the benchmarks' noise (bench/RESULTS.md, "Step 8").

``ASGIHandler`` below loads, for each of those paths, a subclass that calls the
same hooks inline on the event loop. The hooks are computations on the request
and response; where a hook may touch the database (saving a modified session,
messages or a CSRF secret kept in the session) it still runs in a thread.
Anything else in the list is loaded as it is.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from whitenoise.middleware import WhiteNoiseMiddleware


class DualModeMiddleware:
    """A middleware Django may load in either mode: ``__call__`` hands an async
    chain's requests to ``__acall__``, a sync chain's to ``sync_call``."""

    sync_capable = True
    async_capable = True

    def adopt_mode(self, get_response) -> None:
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._is_async:
            return self.__acall__(request)
        return self.sync_call(request)


class _InlineHooks:
    """``process_request``/``process_response`` on the event loop (async mode only;
    in sync mode Django calls ``__call__`` as usual)."""

    def request_needs_thread(self, request) -> bool:
        return False

    def response_needs_thread(self, request, response) -> bool:
        return False

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            if self.request_needs_thread(request):
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
            else:
                response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            else:
                response = self.process_response(request, response)
        return response


class InlineSecurityMiddleware(_InlineHooks, SecurityMiddleware):
    pass


class InlineSessionMiddleware(_InlineHooks, SessionMiddleware):
    """``process_request`` only makes a lazy session; ``process_response`` saves
    (database) only a modified session."""

    def response_needs_thread(self, request, response) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class InlineCommonMiddleware(_InlineHooks, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(_InlineHooks, CsrfViewMiddleware):
    """The secret lives in a cookie unless CSRF_USE_SESSIONS (then: a thread).

    ``process_view`` too runs inline for what it only waves through (a safe
    method, a view exempt from CSRF: the API and the webhooks); a form post, whose
    body it may parse, goes to a thread.
    """

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            self.process_view = self._aprocess_view  # Django awaits a coroutine hook as it is

    def request_needs_thread(self, request) -> bool:
        return settings.CSRF_USE_SESSIONS

    def response_needs_thread(self, request, response) -> bool:
        return settings.CSRF_USE_SESSIONS

    async def _aprocess_view(self, request, callback, callback_args, callback_kwargs):
        view_hook = CsrfViewMiddleware.process_view
        if not settings.CSRF_USE_SESSIONS and (
            request.method in ("GET", "HEAD", "OPTIONS", "TRACE") or getattr(callback, "csrf_exempt", False)
        ):
            return view_hook(self, request, callback, callback_args, callback_kwargs)
        return await sync_to_async(view_hook, thread_sensitive=True)(
            self, request, callback, callback_args, callback_kwargs
        )


class InlineAuthenticationMiddleware(_InlineHooks, AuthenticationMiddleware):
    """``request.user`` stays lazy: the database is read where it is used."""


class InlineMessageMiddleware(_InlineHooks, MessageMiddleware):
    """Storing messages may read or write the session: only then a thread."""

    def response_needs_thread(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class InlineXFrameOptionsMiddleware(_InlineHooks, XFrameOptionsMiddleware):
    pass


class InlineCSPMiddleware(_InlineHooks, CSPMiddleware):
    pass


class AsyncWhiteNoiseMiddleware(DualModeMiddleware, WhiteNoiseMiddleware):
    """Anything that is not a static file goes on to the next middleware on the
    event loop; a static file is served in a thread as before."""

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self.adopt_mode(get_response)

    def sync_call(self, request):
        return WhiteNoiseMiddleware.__call__(self, request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)  # a dict built at start-up
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)


INLINE = {
    f"{base.__module__}.{base.__qualname__}": f"{__name__}.{inline.__qualname__}"
    for base, inline in (
        (SecurityMiddleware, InlineSecurityMiddleware),
        (WhiteNoiseMiddleware, AsyncWhiteNoiseMiddleware),
        (SessionMiddleware, InlineSessionMiddleware),
        (CommonMiddleware, InlineCommonMiddleware),
        (CsrfViewMiddleware, InlineCsrfViewMiddleware),
        (AuthenticationMiddleware, InlineAuthenticationMiddleware),
        (MessageMiddleware, InlineMessageMiddleware),
        (XFrameOptionsMiddleware, InlineXFrameOptionsMiddleware),
        (CSPMiddleware, InlineCSPMiddleware),
    )
}


def inline_paths(paths) -> list[str]:
    """``paths`` (``settings.MIDDLEWARE``) with each known class replaced by its inline subclass."""
    return [INLINE.get(path, path) for path in paths]


class ASGIHandler(DjangoASGIHandler):
    """Django's ASGI handler, loading ``inline_paths(settings.MIDDLEWARE)``.

    Django's ``load_middleware`` reads the list from settings; it is swapped for
    the duration of the load (once, when the process starts) and put back.
    """

    def load_middleware(self, is_async=False):
        configured = settings.MIDDLEWARE
        settings.MIDDLEWARE = inline_paths(configured)
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = configured
