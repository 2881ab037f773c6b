"""Start-up, deployment and login protections (issue 10, item 8)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests import factories

ROOT = Path(__file__).resolve().parents[1]


def _run(args, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("ENV", "SECRET_KEY", "DEBUG")}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("value", ["staging", "prod", "dev", "production2"])
def test_unknown_env_stops_start_up_with_a_message(value):
    result = _run(["check"], ENV=value)
    assert result.returncode != 0
    assert f"ENV='{value}' is not one of development, production" in result.stderr


@pytest.mark.parametrize("value", ["Development", "PRODUCTION", " production "])
def test_env_is_read_in_any_case(value):
    result = _run(["check"], ENV=value, SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stderr


PRODUCTION = dict(ENV="production", SECURE_SSL_REDIRECT="1", SECURE_COOKIES="1", SECURE_HSTS_SECONDS="31536000",
                  SECURE_HSTS_INCLUDE_SUBDOMAINS="1", SECURE_HSTS_PRELOAD="1",
                  FIELD_ENCRYPTION_KEYS="ZmFrZS1maWVsZC1rZXktZm9yLWNoZWNrLWRlcGxveSE=")


def test_check_deploy_is_clean_for_a_production_configuration():
    result = _run(["check", "--deploy"], SECRET_KEY=secrets.token_urlsafe(60), **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_reports_what_the_development_defaults_lack_and_nothing_else():
    result = _run(["check", "--deploy"], ENV="development")
    out = result.stdout + result.stderr
    assert "security.W009" in out  # the development secret key
    assert "security.W012" in out  # session cookie not secure (sessions app and middleware)
    # the middleware is there (Django's, or subclasses of it): never reported missing
    for absent in ("security.W001", "security.W002", "security.W003"):
        assert absent not in out


def test_middleware_listed_are_djangos_or_subclasses_of_it():
    from django.conf import settings
    from django.middleware.clickjacking import XFrameOptionsMiddleware
    from django.middleware.csrf import CsrfViewMiddleware
    from django.middleware.security import SecurityMiddleware
    from django.utils.module_loading import import_string

    classes = [import_string(path) for path in settings.MIDDLEWARE]
    for django_class in (SecurityMiddleware, XFrameOptionsMiddleware, CsrfViewMiddleware):
        assert any(issubclass(c, django_class) for c in classes), django_class


def test_seed_demo_refuses_in_production(db, settings):
    settings.ENV = "production"
    with pytest.raises(CommandError, match="ENV=production"):
        call_command("seed_demo")
    assert not get_user_model().objects.exists()


def test_healthz_is_exempt_from_the_https_redirect(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    resp = client.get("/admin/login/")
    assert resp.status_code == 301 and resp["Location"].startswith("https://")


def _login(client, username, password):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_admin_logins_lock_out_after_repeated_failures(client, db, settings):
    user = factories.make_user("locky", password="right-password")
    other = factories.make_user("other", password="right-password")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "locky", "wrong").status_code == 200  # the form again
    assert _login(client, "locky", "wrong").status_code == 429  # the last failure allowed locks
    resp = _login(client, "locky", "right-password")
    assert resp.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # not logged in
    # another account from the same address is not locked
    assert _login(client, other.username, "right-password").status_code == 302
    assert client.session["_auth_user_id"] == str(other.pk)
    assert user.pk


def test_pages_carry_a_content_security_policy(client, db):
    client.force_login(factories.make_user(is_superuser=True))
    for url in ("/calls/live/", "/admin/", "/admin/login/"):
        policy = client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, url
        assert "frame-ancestors 'none'" in policy
