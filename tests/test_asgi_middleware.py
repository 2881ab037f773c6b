"""The ASGI application runs settings.MIDDLEWARE's classes without a thread switch per hook,
and answers exactly as Django's own handler does."""

import asgiref.sync
import pytest
from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler

from myrobot.middleware import INLINE, ASGIHandler, inline_paths


async def _get(app, path, monkeypatch):
    """(response, thread switches) for one GET through ``app``."""
    switches = []
    real_call = asgiref.sync.SyncToAsync.__call__

    def counting_call(self, *args, **kwargs):
        switches.append(getattr(self.func, "__qualname__", repr(self.func)))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", counting_call)
    try:
        response = await HttpCommunicator(app, "GET", path, headers=[(b"host", b"localhost")]).get_response(timeout=10)
    finally:
        monkeypatch.setattr(asgiref.sync.SyncToAsync, "__call__", real_call)
    return response, switches


@pytest.mark.asyncio
async def test_middleware_hooks_run_on_the_event_loop_with_the_same_answer(monkeypatch):
    djangos, djangos_switches = await _get(DjangoASGIHandler(), "/", monkeypatch)
    ours, our_switches = await _get(ASGIHandler(), "/", monkeypatch)

    hooks = [name for name in djangos_switches if "process_" in name or "WhiteNoise" in name]
    assert len(hooks) >= 12, djangos_switches  # what Django's handler costs: a switch per hook
    assert not [name for name in our_switches if "process_" in name or "WhiteNoise" in name], our_switches
    assert len(our_switches) <= len(djangos_switches) - len(hooks)

    assert ours["status"] == djangos["status"] == 302
    headers = lambda r: {k.lower(): v for k, v in r["headers"] if k.lower() not in (b"content-security-policy",)}  # noqa: E731
    assert headers(ours) == headers(djangos)
    for name in (b"x-frame-options", b"x-content-type-options", b"referrer-policy", b"content-security-policy"):
        assert name in {k.lower() for k, _ in ours["headers"]}, name


def test_settings_name_djangos_classes_and_the_handler_loads_their_inline_subclasses():
    # check --deploy looks for Django's paths in settings.MIDDLEWARE (tests/test_security_settings.py).
    assert "django.middleware.security.SecurityMiddleware" in settings.MIDDLEWARE
    assert not [path for path in settings.MIDDLEWARE if path.startswith("myrobot.middleware")]
    loaded = inline_paths(settings.MIDDLEWARE)
    assert [p for p in settings.MIDDLEWARE if p in INLINE] == [p for p in settings.MIDDLEWARE if INLINE.get(p) in loaded]
    assert len(INLINE) == len([p for p in settings.MIDDLEWARE if p in INLINE])  # every mapped class is in use
    ASGIHandler()
    assert "myrobot.middleware.InlineSecurityMiddleware" not in settings.MIDDLEWARE  # put back after the load


@pytest.mark.asyncio
async def test_a_form_post_without_its_csrf_token_is_still_refused():
    body = b"username=someone&password=secret"
    headers = [(b"host", b"localhost"), (b"content-type", b"application/x-www-form-urlencoded")]
    response = await HttpCommunicator(ASGIHandler(), "POST", "/admin/login/", body=body, headers=headers).get_response(
        timeout=10
    )
    assert response["status"] == 403
    assert b"CSRF" in response["body"]
