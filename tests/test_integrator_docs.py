"""docs/integrators.md, run as written against a live server (daphne on the test database).

Its ```sh blocks run in order in one bash script (curl, python manage.py), its
```python receiver runs as its own process, and the webhook for the call the
script cancels must reach that receiver, verified.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import factories
from tests import live
from tests.live import ROOT

DOC = ROOT / "docs" / "integrators.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readme_links_the_integrator_page():
    assert "docs/integrators.md" in (ROOT / "README.md").read_text()


def test_the_receiver_is_about_fifteen_lines():
    [receiver] = blocks("python")
    assert len([line for line in receiver.splitlines() if line.strip()]) <= 16


@pytest.fixture
def loopback_webhooks(settings):
    """The guide's receiver listens on 127.0.0.1: allowed only with the allowance on (as with DEBUG)."""
    settings.WEBHOOK_ALLOW_LOOPBACK = True


@pytest.mark.django_db(transaction=True)
def test_integrator_steps_run_against_the_live_server(
    fake_daily, fake_runner, loopback_webhooks, asgi_live_server, tmp_path
):
    from webhooks.models import WebhookEndpoint

    org = factories.make_org("sunrise-clinic", name="Sunrise Family Clinic")
    factories.make_workflow(org, slug="appointment-reminder")
    port = free_port()
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url=f"http://127.0.0.1:{port}/", events=["call.ended"]
    )

    [receiver_code] = blocks("python")
    receiver_file = tmp_path / "receiver.py"
    receiver_file.write_text(receiver_code)
    env = {**os.environ, "MYROBOT_WEBHOOK_SECRET": endpoint.secret, "PORT": str(port)}
    receiver = subprocess.Popen(
        [sys.executable, str(receiver_file)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    got_line = threading.Event()

    def read():
        for line in receiver.stdout:
            lines.append(line)
            got_line.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the receiver is listening once it accepts a connection
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)

        script = "set -euo pipefail\n" + "\n".join(blocks("sh")) + '\necho "SESSION=$SESSION_ID"\n'
        # The virtualenv is not on PATH: the steps must work from a plain shell.
        venv_bin = str(Path(sys.executable).parent)
        shell_env = {
            **os.environ,
            "PATH": ":".join(p for p in os.environ["PATH"].split(":") if p != venv_bin),
            "MYROBOT_URL": asgi_live_server.url,
            "DATABASE_URL": live.test_database_url(),
        }
        shell_env.pop("TEST_DATABASE_NAME", None)
        # One answer per line in the script's output (curl prints none after a body).
        (tmp_path / ".curlrc").write_text('write-out = "\\n"\n')
        shell_env["CURL_HOME"] = str(tmp_path)
        done = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=shell_env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        session_id = re.search(r"^SESSION=(\S+)$", done.stdout, flags=re.M).group(1)

        # The script read the results: its last answers are the call and its deliveries.
        call_json = next(
            json.loads(line) for line in done.stdout.splitlines() if line.startswith("{") and session_id in line
            and '"transcript"' in line
        )
        assert call_json["status"] == "canceled" and call_json["patient_external_id"] == "EHR-1001"

        assert got_line.wait(20), receiver.stderr.read() if receiver.poll() is not None else "no webhook arrived"
        webhook_id, event_type, got_session, status = lines[0].split()
        assert (event_type, got_session, status) == ("call.ended", session_id, "canceled")
        assert webhook_id.startswith("msg_")
    finally:
        receiver.terminate()
        receiver.wait(5)


def test_the_start_call_answer_in_the_guide_lists_what_the_api_answers():
    from calls.api import StartCallOut

    text = (ROOT / "docs" / "integrators.md").read_text()
    said = re.search(r"The answer is `202 \{([^}]*)\}`", text).group(1)
    assert [key.strip().strip('"') for key in said.split(",")] == list(StartCallOut.model_fields)
