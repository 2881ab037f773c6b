"""ASGI entry point: Django for HTTP, Channels for the bot's and browsers' sockets."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myrobot.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from myrobot.middleware import ASGIHandler  # noqa: E402

# Django's ASGI application, its middleware run on the event loop (myrobot/middleware.py).
django_asgi_app = ASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.routing import websocket_urlpatterns as call_sockets  # noqa: E402
from campaigns.routing import websocket_urlpatterns as campaign_sockets  # noqa: E402

# The campaigns' sockets first: calls' list ends with the catch-all that refuses unknown paths.
application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter([*campaign_sockets, *call_sockets])}
)

# What start-up loaded lives as long as the process: take it out of the garbage
# collector's full passes, which otherwise scan it all and stall the event loop
# for tens of milliseconds now and then (bench/RESULTS.md, "Step 8": the p99s).
gc.freeze()
