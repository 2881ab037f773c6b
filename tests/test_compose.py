"""compose.yaml and Dockerfile.server against the settings and docs/operations.md.

There is no container engine where the tests run, so the image is not built
here: these tests check what can be checked without one — the processes'
commands, the environment each gets, and that the environment is a production
configuration the settings accept (``manage.py check --deploy``, locally).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile.server").read_text()
SERVER = ("migrate", "web", "worker", "beat")


def _settings_read() -> set[str]:
    """Every environment variable myrobot/settings.py reads."""
    text = (ROOT / "myrobot" / "settings.py").read_text()
    return set(re.findall(r"""(?:os\.environ\.get|env_bool|env_list)\(\s*["']([A-Z_]+)["']""", text))


def _env(service: str) -> dict[str, str]:
    """The service's environment with ${VAR:-default} / ${VAR:?message} filled in as a user would."""
    given = {"SECRET_KEY": secrets.token_urlsafe(60), "PUBLIC_BASE_URL": "https://myrobot.example.com",
             "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}

    def fill(match):
        name, op, rest = match.group(1), match.group(2), match.group(3)
        return given.get(name, rest if op == ":-" else "")

    return {k: re.sub(r"\$\{(\w+)(:[-?])([^}]*)\}", fill, str(v)) for k, v in SERVICES[service]["environment"].items()}


def test_compose_runs_the_processes_docs_operations_describes():
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(SERVICES)
    for name in SERVER:
        assert SERVICES[name]["build"]["dockerfile"] == "Dockerfile.server"
    assert SERVICES["web"]["command"][:1] == ["daphne"] and "myrobot.asgi:application" in SERVICES["web"]["command"]
    assert SERVICES["worker"]["command"][:4] == ["celery", "-A", "myrobot", "worker"]
    assert "-Q" not in SERVICES["worker"]["command"]  # every declared queue, webhooks included
    assert SERVICES["beat"]["command"][:4] == ["celery", "-A", "myrobot", "beat"]
    assert SERVICES["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("web", "worker", "beat"):
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_beat_writes_its_schedule_where_the_image_lets_it():
    command = SERVICES["beat"]["command"]
    schedule = command[command.index("--schedule") + 1]
    assert schedule.startswith("/app/var/")
    assert "mkdir -p /app/var && chown myrobot /app/var" in DOCKERFILE and "USER myrobot" in DOCKERFILE


def test_every_variable_given_is_one_the_settings_read():
    read = _settings_read()
    for name in SERVER:
        assert set(_env(name)) <= read, set(_env(name)) - read


def test_the_services_reach_postgres_and_redis_by_their_compose_names():
    env = _env("web")
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    postgres = SERVICES["postgres"]["environment"]
    assert env["DATABASE_URL"].endswith("/" + postgres["POSTGRES_DB"])
    assert SERVICES["web"]["ports"] == ["8000:8000"] and "EXPOSE 8000" in DOCKERFILE
    assert "/healthz" in " ".join(SERVICES["web"]["healthcheck"]["test"])


def test_the_image_is_python_3_11_with_the_requirements_and_static_files():
    assert DOCKERFILE.startswith("# ") and "FROM python:3.11-slim" in DOCKERFILE
    assert "pip install -r requirements.txt" in DOCKERFILE
    assert "manage.py collectstatic --noinput" in DOCKERFILE
    assert 'CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "myrobot.asgi:application"]' in DOCKERFILE


def test_the_compose_environment_is_a_clean_production_configuration():
    """With the hosts pointed at this machine, `check --deploy` finds nothing to warn about."""
    env = {k: v for k, v in os.environ.items() if k not in _settings_read()}
    env.update(_env("web"))
    env["DATABASE_URL"] = "sqlite:///" + str(ROOT / "compose-check.sqlite3")
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    env["SECURE_HSTS_INCLUDE_SUBDOMAINS"] = env["SECURE_HSTS_PRELOAD"] = "1"  # your domain's choice
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr
