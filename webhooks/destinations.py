"""Where webhooks may go: public internet addresses only, checked when saved and when sent.

An endpoint's URL is typed by an organisation's admin, and the server sends to
it from inside the deployment's network: without a check it would reach the
database, Redis, the cloud's metadata service or any internal name. So:

- the host is resolved and **every** address it resolves to must be public
  (``is_public``): not private, loopback, link-local (the metadata service),
  shared, reserved, multicast or unspecified, also when wrapped in an IPv6
  form (IPv4-mapped, 6to4, Teredo, NAT64);
- the check runs when the endpoint is saved *and* before every send, and the
  send connects to the address that was checked (``PinnedConnection``), so a
  name that resolves differently a moment later (DNS rebinding) changes
  nothing; redirects are never followed;
- loopback is allowed only with ``settings.WEBHOOK_ALLOW_LOOPBACK`` (on with
  ``DEBUG``; never in production), for a receiver on a developer's machine.

``resolve`` is the one place that asks DNS; tests replace it with a stub and
assert on the decision, without connecting anywhere.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """A destination webhooks may not reach, with a reason for the organisation's admin."""


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (``socket.getaddrinfo``); replaced in tests."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [info[4][0] for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP literal) is a public unicast internet address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_public(str(inner))
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    address: str  # the checked address a send connects to
    target: str  # path and query, as sent in the request line


def check(url: str) -> Destination:
    """The checked destination of ``url``; raises ``Refused`` saying why it may not be reached."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("Enter an absolute http(s) URL, e.g. https://ehr.example.org/hooks/myrobot.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("The URL's port is not a number from 1 to 65535.")
    host = parts.hostname
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise Refused(f"The host {host} could not be resolved: webhooks go only to hosts with a public address.")
    if not addresses:
        raise Refused(f"The host {host} could not be resolved: webhooks go only to hosts with a public address.")
    allow_loopback = bool(getattr(settings, "WEBHOOK_ALLOW_LOOPBACK", False))
    for address in addresses:
        if is_public(address):
            continue
        if allow_loopback and _is_loopback(address):
            continue
        raise Refused(
            f"The host {host} resolves to a private, loopback, link-local or reserved address: "
            "webhooks go only to public internet addresses."
        )
    if parts.scheme == "http" and not (allow_loopback and all(_is_loopback(a) for a in addresses)):
        raise Refused("Use https:// (http:// is accepted only for a receiver on this machine, with DEBUG on).")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, host, port, addresses[0], target)


class PinnedConnection:
    """An HTTP(S) connection to the checked address, speaking to (and verifying) the URL's host."""

    @staticmethod
    def open(destination: Destination, timeout: float) -> http.client.HTTPConnection:
        if destination.scheme == "https":
            return _PinnedHTTPS(destination, timeout)
        return _PinnedHTTP(destination, timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, destination: Destination, timeout: float):
        super().__init__(destination.host, destination.port, timeout=timeout)
        self._address = destination.address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, destination: Destination, timeout: float):
        super().__init__(destination.host, destination.port, timeout=timeout, context=ssl.create_default_context())
        self._address = destination.address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # Certificate and SNI for the URL's host name, not the address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
