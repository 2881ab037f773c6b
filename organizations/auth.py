"""API-key authentication for the REST API (docs/architecture.md, "HTTP API").

``Authorization: Bearer <organisation API key>``. On success the request
carries ``request.api_key`` and ``request.organization``, and every handler
scopes its queries by that organisation. A missing, unknown or revoked key
(or an inactive organisation) gets the API's 401 envelope.
"""

from ninja.security import HttpBearer

from .models import ApiKey


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request, token):
        key = ApiKey.authenticate(token.strip())
        if key is None:
            return None
        request.api_key = key
        request.organization = key.organization
        return key


api_key_auth = ApiKeyAuth()
