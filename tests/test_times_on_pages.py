"""One time formatter on staff pages: the clinic's zone, the date where it matters, the zone said once."""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
import time_machine

from audit.models import AuditAction
from audit.services import record
from calls.models import CallEvent
from campaigns.models import Campaign
from organizations import timefmt
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=dt_timezone.utc)  # Monday 07:00 in Los Angeles
RINGS = datetime(2026, 12, 8, 17, 0, tzinfo=dt_timezone.utc)  # Tuesday 09:00 in Los Angeles, 12:00 in New York


@pytest.fixture
def clinic():
    org = factories.make_org("sunrise", timezone="America/Los_Angeles")
    workflow = factories.make_workflow(org)
    return dict(org=org, workflow=workflow,
                local=factories.make_patient(org, timezone="America/Los_Angeles"),
                away=factories.make_patient(org, timezone="America/New_York"),
                admin=factories.make_user("ann", org=org, role="admin"))


def page(client, user, url):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_show_is_the_clinics_date_and_minute():
    assert timefmt.show(RINGS, "America/Los_Angeles") == "2026-12-08 09:00"
    assert timefmt.show(RINGS, "America/Los_Angeles", date=False, seconds=True) == "09:00:00"
    assert timefmt.show(None, "America/Los_Angeles") == "—"


@time_machine.travel(NOW, tick=False)
def test_rings_at_says_the_time_once_and_the_patients_clock_only_where_it_differs(client, clinic):
    same = factories.make_call(clinic["org"], clinic["workflow"], clinic["local"], status="scheduled", scheduled_for=RINGS)
    away = factories.make_call(clinic["org"], clinic["workflow"], clinic["away"], status="scheduled", scheduled_for=RINGS)

    body = page(client, clinic["admin"], f"/calls/{same.pk}/")
    rings = body.split('data-field="rings">')[1].split("<")[0]
    assert rings == "2026-12-08 09:00 clinic time"
    rings = page(client, clinic["admin"], f"/calls/{away.pk}/").split('data-field="rings">')[1].split("<")[0]
    assert rings == "2026-12-08 09:00 clinic time (patient 12:00 EST)"


@time_machine.travel(NOW, tick=False)
def test_admin_lists_show_clinic_time_with_the_zone_in_the_heading(client, clinic):
    call = factories.make_call(clinic["org"], clinic["workflow"], clinic["local"], status="scheduled", scheduled_for=RINGS)
    calls = page(client, clinic["admin"], "/admin/calls/callsession/")
    assert "Scheduled for (clinic time)" in calls and "2026-12-08 09:00" in calls
    assert "Dec. 8, 2026" not in calls  # Django's own UTC rendering is gone

    Campaign.objects.create(organization=clinic["org"], workflow=clinic["workflow"], name="Flu shots",
                            pace_per_minute=5, start_at=RINGS)
    campaigns = page(client, clinic["admin"], "/admin/campaigns/campaign/")
    assert "Starts (clinic time)" in campaigns and "2026-12-08 09:00" in campaigns
    assert "2026-12-07 07:00" in campaigns  # created, 15:00 UTC

    record(AuditAction.VIEW_CALL, call, user=clinic["admin"], via="page")
    audit = page(client, clinic["admin"], "/admin/audit/auditevent/")
    assert "At (clinic time)" in audit and "2026-12-07 07:00:00" in audit


@time_machine.travel(NOW, tick=False)
def test_an_events_admin_heading_is_in_clinic_time(client, clinic):
    call = factories.make_call(clinic["org"], clinic["workflow"], clinic["local"])
    event = CallEvent.objects.create(call=call, at=NOW, kind="bot_started", data={})
    assert str(event) == "bot started at 2026-12-07 07:00:00"
