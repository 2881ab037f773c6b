"""The embedded default (eager Celery, no worker): "Call patient" answers at once,
and the start — retries included — runs on a thread of its own."""

from __future__ import annotations

import pytest

from calls.models import CallSession
from calls.tasks import wait_for_background_starts
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_retried_start_does_not_hold_the_staff_members_request(client, settings, fake_daily, fake_runner):
    settings.EMBEDDED_START_IN_THREAD = True
    org = factories.make_org("clinic-a", name="Clinic A")
    wf = factories.make_workflow(org)
    patient = factories.make_patient(org)
    client.force_login(factories.make_user(org=org, role="staff"))
    fake_runner.fail_next("POST /start", 503, times=10)  # every start refused for a while: six attempts

    resp = client.post(f"/admin/patients/patient/{patient.pk}/call/", {"workflow": wf.pk})

    assert resp.status_code == 302
    call = CallSession.objects.get()
    assert not call.is_final  # the page answered before the start gave up...
    assert wait_for_background_starts(60)
    call.refresh_from_db()
    assert call.status == "failed"  # ...which it then did, on its own thread, with a reason
    assert "gave up after 6 attempts" in call.error
    assert len(fake_runner.requests_to("POST /start")) == 6
