"""WhiteNoise that does not push every ASGI request through a thread.

WhiteNoise 6 is a sync-only middleware. Under ASGI, Django then runs it in a
worker thread (``sync_to_async``) and calls the rest of the chain back on the
event loop (``async_to_sync``): two thread switches, and a new thread per
request (Django gives each request its own thread-sensitive context). Measured
in ``bench/`` (see bench/RESULTS.md) that was most of a webhook's CPU time in
the server. This subclass is async-capable: anything that is not a static file
goes straight to the next middleware on the event loop; a static file is
served in a thread as before.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, *args, **kwargs):
        super().__init__(get_response, *args, **kwargs)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self._is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)  # a dict built at start-up
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)


# --- Django's own middleware, without a thread hop per hook ------------------------
#
# Under ASGI, Django runs every hook of a MiddlewareMixin middleware
# (process_request, process_response) through ``sync_to_async``: with the seven
# below that is about fourteen thread switches per request, measured at a quarter
# of a webhook's CPU time and ~2.5 ms of its latency (bench/RESULTS.md). Their
# hooks are plain computations on the request and response, except where a hook
# may touch the database (saving a modified session, messages kept in the
# session, a CSRF secret kept in the session): those cases still go to a thread.

from django.conf import settings  # noqa: E402
from django.contrib.auth.middleware import AuthenticationMiddleware  # noqa: E402
from django.contrib.messages.middleware import MessageMiddleware  # noqa: E402
from django.contrib.sessions.middleware import SessionMiddleware  # noqa: E402
from django.middleware.clickjacking import XFrameOptionsMiddleware  # noqa: E402
from django.middleware.common import CommonMiddleware  # noqa: E402
from django.middleware.csrf import CsrfViewMiddleware  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402


class _InlineHooks:
    """Run ``process_request``/``process_response`` on the event loop (async mode
    only; in sync mode Django calls ``__call__`` as usual)."""

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
    """The secret lives in a cookie unless CSRF_USE_SESSIONS (then: a thread)."""

    def request_needs_thread(self, request) -> bool:
        return settings.CSRF_USE_SESSIONS

    def response_needs_thread(self, request, response) -> bool:
        return settings.CSRF_USE_SESSIONS


class InlineAuthenticationMiddleware(_InlineHooks, AuthenticationMiddleware):
    """``request.user`` stays lazy: the database is read where it is used."""


class InlineMessageMiddleware(_InlineHooks, MessageMiddleware):
    """Storing messages may read or write the session: only then a thread."""

    def response_needs_thread(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class InlineXFrameOptionsMiddleware(_InlineHooks, XFrameOptionsMiddleware):
    pass
