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
