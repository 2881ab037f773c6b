from channels.auth import AuthMiddlewareStack
from django.urls import path, re_path

from . import consumers
from .origin import SameOriginValidator


def browser(consumer):
    """Browser sockets: session auth, and an Origin of the same scheme, host and port."""
    return SameOriginValidator(AuthMiddlewareStack(consumer))


websocket_urlpatterns = [
    # The bot sends no Origin header and authenticates with its per-call token.
    path("ws/bot/<uuid:session_id>/", consumers.BotStatusConsumer.as_asgi()),
    path("ws/calls/", browser(consumers.CallListConsumer.as_asgi())),
    path("ws/calls/<uuid:session_id>/", browser(consumers.CallDetailConsumer.as_asgi())),
    # Anything else (an unknown path, a malformed session id): refused before
    # accept (HTTP 403), instead of a routing error and a traceback in the log.
    re_path(r"", consumers.RefusedSocket.as_asgi()),
]
