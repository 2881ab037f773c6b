"""The Origin check for browser sockets: same scheme, host and port as the request.

Channels' ``AllowedHostsOriginValidator`` accepts any port on an allowed host
(a page served by anything else on that machine could open a live socket with
the user's cookies). Here the Origin must be the origin the socket was opened
on — the ``Host`` header (itself in ``ALLOWED_HOSTS``) with the request's
scheme — or one of ``CSRF_TRUSTED_ORIGINS``: the rule Django's CSRF check
applies to forms.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_tuple(url: str):
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def request_scheme(scope) -> str:
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, expected = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if _header(scope, name).split(",")[0].strip() == expected:
            return "https"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def origin_allowed(scope) -> bool:
    origin, host = _header(scope, b"origin"), _header(scope, b"host")
    if not origin or not host:
        return False
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    theirs = _origin_tuple(origin)
    if theirs is None:
        return False
    if any(theirs == _origin_tuple(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS):
        return True
    return theirs == _origin_tuple(f"{request_scheme(scope)}://{host}")


class SameOriginValidator:
    """ASGI wrapper: refuses (HTTP 403 before accept) a socket from another origin."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
