"""django-csp's middleware, without a thread hop per request under ASGI.

``csp.middleware.CSPMiddleware`` is a ``MiddlewareMixin``: under ASGI Django
runs each of its hooks in a worker thread. Both hooks only read settings and
set a header (no database), so here they run on the event loop.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from csp.middleware import CSPMiddleware


class AsyncCSPMiddleware(CSPMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    async def __acall__(self, request):
        self.process_request(request)
        response = await self.get_response(request)
        return self.process_response(request, response)
