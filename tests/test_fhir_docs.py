"""docs/fhir.md, run as written: its ```sh blocks in order in one bash script,
against a live server (daphne on the test database) and the fake EHR, which
fetches our public key from the JWKS URL the page tells the integrator to register."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from tests import factories
from tests import live
from tests.live import ROOT

DOC = ROOT / "docs" / "fhir.md"


def test_readme_and_architecture_link_the_fhir_page():
    assert "docs/fhir.md" in (ROOT / "README.md").read_text()
    assert "fhir.md" in (ROOT / "docs" / "architecture.md").read_text()


@pytest.mark.django_db(transaction=True)
def test_fhir_steps_run_against_the_live_server_and_the_fake_ehr(fake_daily, fake_fhir, asgi_live_server, tmp_path):
    org = factories.make_org("sunrise-clinic", name="Sunrise Family Clinic")
    factories.make_workflow(org, slug="appointment-reminder")
    fake_fhir.register_client("myrobot-backend", algorithm="ES384",
                              jwks_url=f"{asgi_live_server.url}/fhir/sunrise-clinic/jwks.json")
    fake_fhir.add_patient("p-1001", mrn="MRN-1001", phone="+14155550199")
    start = dt.datetime.combine(timezone.now().date() + dt.timedelta(days=2), dt.time(17, 0), dt.timezone.utc)
    fake_fhir.add_appointment("appt-1", "p-1001", start.isoformat().replace("+00:00", "Z"))

    script = "set -euo pipefail\n" + "\n".join(re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MYROBOT_URL": asgi_live_server.url,
        "DATABASE_URL": live.test_database_url(),
        "FHIR_BASE_URL": fake_fhir.api_url,
        "FHIR_KEY_FILE": str(tmp_path / "myrobot-fhir.pem"),
        "DAILY_API_URL": fake_daily.api_url,
        "DAILY_API_KEY": fake_daily.api_key,
        "PUBLIC_BASE_URL": asgi_live_server.url,
    }
    env.pop("TEST_DATABASE_NAME", None)
    (tmp_path / ".curlrc").write_text('write-out = "\\n"\n')
    env["CURL_HOME"] = str(tmp_path)
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    jwks, synced, calls = json.loads(lines[0]), json.loads(lines[1]), json.loads(lines[-1])
    assert jwks["keys"][0]["alg"] == "ES384" and "d" not in jwks["keys"][0]
    assert (synced["appointments"], synced["calls_placed"]) == (1, 1)
    [call] = calls["items"]
    assert call["status"] == "scheduled" and call["patient_external_id"] == "MRN-1001"
    assert fake_fhir.refused_assertions == [] and fake_fhir.issued[0]["kid"]
    assert oct(os.stat(tmp_path / "myrobot-fhir.pem").st_mode & 0o777) == "0o600"
