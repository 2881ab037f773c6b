"""Show a new secret (an API key, a webhook signing secret) once, on a page of its own.

Never in Django's ``messages``: those travel in a cookie that is signed, not
encrypted, and stays in the browser (and in any log or proxy that records
cookies). The page is not cached; the secret is in no URL and stored nowhere
but as the model keeps it.
"""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers


def show_once(request, *, title: str, warning: str, secrets: list[tuple[str, str]], next_url: str) -> TemplateResponse:
    """The page with ``secrets`` ((label, secret) pairs) and a link on to ``next_url``."""
    context = {
        **admin.site.each_context(request),
        "title": title,
        "warning": warning,
        "secrets": secrets,
        "next_url": next_url,
    }
    response = TemplateResponse(request, "admin/organizations/secret_once.html", context)
    add_never_cache_headers(response)
    return response
