"""HTTP to an organisation's FHIR server, authorised with SMART Backend Services.

Discovery reads ``{base}/.well-known/smart-configuration`` for the token
endpoint. A token is asked for with a client assertion: a short-lived JWT
(RS384 or ES384) signed with the connection's private key. Tokens are kept per
process until shortly before they expire; a 401 drops the kept token and the
request is sent once more with a fresh one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import httpx
import jwt
from django.conf import settings

from .keys import public_jwk, thumbprint
from .models import FhirConnection
from .resources_check import validated

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: a token is renewed this many seconds before the EHR says it expires
TOKEN_MARGIN_S = 30
ASSERTION_LIFETIME_S = 300  # SMART: no more than five minutes
DISCOVERY_TTL_S = 3600


class FhirError(Exception):
    """The EHR refused or did not answer. ``status`` None: no answer (timeout, connection)."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body[:300]

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in (408, 425, 429) or self.status >= 500

    @property
    def is_timeout(self) -> bool:
        return self.status is None


class Conflict(FhirError):
    """409 or 412: someone changed the resource since we read it."""


@dataclass
class _Token:
    value: str
    expires_at: float


_tokens: dict[tuple, _Token] = {}
_discovery: dict[str, tuple[float, dict]] = {}
_lock = threading.Lock()
_http: httpx.Client | None = None


def http() -> httpx.Client:
    """One pooled client per process (keep-alive to the EHR across a sync's pages)."""
    global _http
    with _lock:
        if _http is None:
            _http = httpx.Client(follow_redirects=False, headers={"User-Agent": "MyRobot-FHIR/1.0"})
        return _http


def forget_tokens() -> None:
    """Drop every kept token and discovery (tests; a rotated key)."""
    with _lock:
        _tokens.clear()
        _discovery.clear()


def _token_key(connection: FhirConnection) -> tuple:
    return (connection.pk, connection.base, connection.client_id, connection.scopes, hash(connection.private_key))


def _send(method: str, url: str, *, timeout: float, **kwargs) -> httpx.Response:
    try:
        return http().request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException:
        raise FhirError(f"The EHR did not answer {method} {_path(url)} within {timeout:g} s.") from None
    except httpx.HTTPError as exc:
        raise FhirError(f"Could not reach the EHR ({type(exc).__name__}) for {method} {_path(url)}.") from None


def _path(url: str) -> str:
    return httpx.URL(url).path


class FhirClient:
    """Requests to one connection's server; ``timeout`` per request (short for tools)."""

    def __init__(self, connection: FhirConnection, *, timeout: float | None = None):
        self.connection = connection
        self.timeout = timeout if timeout is not None else settings.FHIR_TIMEOUT_S

    # --- SMART Backend Services -------------------------------------------------------

    def smart_configuration(self) -> dict:
        base = self.connection.base
        with _lock:
            kept = _discovery.get(base)
        if kept and kept[0] > time.monotonic():
            return kept[1]
        response = _send("GET", f"{base}/.well-known/smart-configuration", timeout=self.timeout,
                         headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise FhirError(
                f"SMART discovery at {base}/.well-known/smart-configuration answered {response.status_code}: "
                "check the base URL.", response.status_code, response.text,
            )
        config = response.json()
        if not config.get("token_endpoint"):
            raise FhirError("The SMART configuration has no token_endpoint.", response.status_code)
        with _lock:
            _discovery[base] = (time.monotonic() + DISCOVERY_TTL_S, config)
        return config

    def client_assertion(self, token_endpoint: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.connection.client_id,
            "sub": self.connection.client_id,
            "aud": token_endpoint,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        try:
            headers = {"typ": "JWT", "kid": self.connection.key_id or thumbprint(
                public_jwk(self.connection.private_key, self.connection.algorithm))}
            return jwt.encode(claims, self.connection.private_key, algorithm=self.connection.algorithm, headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:  # a key of the wrong kind, or no PEM
            raise FhirError(
                f"The connection's private key cannot sign {self.connection.algorithm} assertions "
                f"({type(exc).__name__}): paste a PEM {'RSA' if self.connection.algorithm == 'RS384' else 'P-384 EC'} key."
            ) from None

    def _new_token(self) -> _Token:
        endpoint = self.smart_configuration()["token_endpoint"]
        response = _send(
            "POST", endpoint, timeout=self.timeout, headers={"Accept": "application/json"},
            data={
                "grant_type": "client_credentials",
                "scope": self.connection.scopes,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.client_assertion(endpoint),
            },
        )
        if response.status_code != 200:
            try:
                detail = response.json().get("error_description") or response.json().get("error") or ""
            except ValueError:
                detail = ""
            raise FhirError(
                f"The EHR refused our token request ({response.status_code}{': ' + detail if detail else ''}): "
                "check the client id, the key registered with the EHR and the scopes.",
                response.status_code, response.text,
            )
        body = response.json()
        lifetime = float(body.get("expires_in") or 300)
        return _Token(body["access_token"], time.monotonic() + max(lifetime - TOKEN_MARGIN_S, lifetime / 2))

    def access_token(self, *, renew: bool = False) -> str:
        key = _token_key(self.connection)
        with _lock:
            kept = _tokens.get(key)
        if kept is not None and not renew and kept.expires_at > time.monotonic():
            return kept.value
        token = self._new_token()
        with _lock:
            _tokens[key] = token
        return token.value

    # --- requests -------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.connection.base}/{path_or_url.lstrip('/')}"

    def request(self, method: str, path_or_url: str, *, params=None, json=None, headers=None) -> httpx.Response:
        """One authorised request; a 401 is answered once with a new token."""
        url = self.url(path_or_url)
        if not url.startswith(self.connection.base + "/"):
            # a `next` link pointing elsewhere would carry our token to another host
            raise FhirError(f"The EHR sent a link outside its base URL ({_path(url)}); not followed.")
        base_headers = {"Accept": FHIR_JSON}
        if json is not None:
            base_headers["Content-Type"] = FHIR_JSON
        base_headers.update(headers or {})
        for renew in (False, True):
            base_headers["Authorization"] = f"Bearer {self.access_token(renew=renew)}"
            response = _send(method, url, timeout=self.timeout, params=params, json=json, headers=base_headers)
            if response.status_code != 401:
                return response
            log.info("FHIR %s %s: 401, renewing the token", method, _path(url))
        return response

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code in (409, 412):
            raise Conflict(f"{what}: the EHR answered {response.status_code} (changed meanwhile).",
                           response.status_code, response.text)
        if response.status_code >= 400:
            raise FhirError(f"{what}: the EHR answered {response.status_code}.", response.status_code, response.text)
        return response

    def search(self, resource: str, params: dict) -> Iterator[dict]:
        """Each page (a searchset Bundle), following ``link[relation=next]``."""
        response = self._check(self.request("GET", resource, params=params), f"Search {resource}")
        while True:
            bundle = response.json()
            yield bundle
            nxt = next((link.get("url") for link in bundle.get("link", []) if link.get("relation") == "next"), None)
            if not nxt:
                return
            response = self._check(self.request("GET", nxt), f"Search {resource} (next page)")

    def read(self, resource: str, fhir_id: str) -> tuple[dict, str]:
        """(the resource, its ETag)."""
        response = self._check(self.request("GET", f"{resource}/{fhir_id}"), f"Read {resource}/{fhir_id}")
        body = response.json()
        etag = response.headers.get("ETag") or (
            f'W/"{body["meta"]["versionId"]}"' if body.get("meta", {}).get("versionId") else ""
        )
        return body, etag

    def update(self, resource: dict, etag: str) -> dict:
        """PUT with If-Match; Conflict on 409/412."""
        what = f"Update {resource['resourceType']}/{resource['id']}"
        headers = {"If-Match": etag} if etag else {}
        response = self._check(
            self.request("PUT", f"{resource['resourceType']}/{resource['id']}", json=validated(resource),
                         headers=headers), what,
        )
        return response.json() if response.content else resource

    def create(self, resource: dict, *, if_none_exist: str = "") -> tuple[int, str]:
        """POST (conditional with ``If-None-Exist``); (status, Location or id)."""
        headers = {"Prefer": "return=minimal"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        response = self._check(
            self.request("POST", resource["resourceType"], json=validated(resource), headers=headers),
            f"Create {resource['resourceType']}",
        )
        location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
        if not location and response.content:
            try:
                body = response.json()
                location = f"{body.get('resourceType')}/{body.get('id')}"
            except ValueError:
                pass
        return response.status_code, location
