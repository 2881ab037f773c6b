"""The dashboard and the CSV export: figures in the organisation's zone, scoping,
the export's role shaping, and a query count that does not grow with the calls."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls.models import CallEvent, CallSession
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=dt_timezone.utc)  # 10:00 in Los Angeles


@pytest.fixture
def clinic():
    org = factories.make_org("sunrise", name="Sunrise", timezone="America/Los_Angeles")
    wf = factories.make_workflow(org, slug="reminder", name="Reminder")
    other_wf = factories.make_workflow(org, slug="followup", name="Follow-up")
    patient = factories.make_patient(org, first_name="Ada", last_name="Lovelace", phone="+14155550123",
                                     external_id="EHR-42")
    return dict(org=org, wf=wf, other_wf=other_wf, patient=patient)


def add_call(c, *, created, status="completed", answered_s=5, talk_s=60, result="confirmed", wf=None, turn_ms=None,
             transcript=None):
    call = factories.make_call(
        c["org"], wf or c["wf"], c["patient"], status=status,
        answered_at=created + timedelta(seconds=answered_s) if answered_s is not None else None,
        ended_at=created + timedelta(seconds=(answered_s or 0) + talk_s),
        outcome={"result": result, "notes": "Will bring her glasses.", "data": {}} if result else None,
        end_reason="completed" if status == "completed" else status,
        transcript=transcript or [{"role": "assistant", "text": "Hello Ada"}, {"role": "user", "text": "Yes I'll come"}],
        dialout_attempts=1,
    )
    CallSession.objects.filter(pk=call.pk).update(created_at=created)
    if turn_ms is not None:
        CallEvent.objects.create(call=call, seq=1, at=created, kind="metrics", data={"turn_ms": turn_ms})
    return call


def page(client, user, **params):
    client.force_login(user)
    return client.get("/calls/dashboard/", params)


@time_machine.travel(NOW, tick=False)
def test_figures_in_the_organisations_zone(client, clinic):
    staff = factories.make_user(org=clinic["org"], role="staff")
    # 07:00 UTC on 30 Nov is 23:00 on 29 Nov in Los Angeles: counted on the 29th.
    add_call(clinic, created=datetime(2026, 11, 30, 7, 0, tzinfo=dt_timezone.utc), talk_s=60, turn_ms=700)
    add_call(clinic, created=datetime(2026, 11, 30, 17, 0, tzinfo=dt_timezone.utc), talk_s=120, turn_ms=900,
             result="rescheduled")
    add_call(clinic, created=datetime(2026, 11, 30, 17, 30, tzinfo=dt_timezone.utc), talk_s=300, turn_ms=1100)
    add_call(clinic, created=datetime(2026, 11, 30, 17, 40, tzinfo=dt_timezone.utc), status="no_answer",
             answered_s=None, talk_s=30, result=None)
    resp = page(client, staff)
    body = resp.content.decode()
    assert resp.status_code == 200
    assert '<span class="dash-value" id="total-calls">4</span>' in body
    assert '<span class="dash-value" id="answer-rate">75%</span>' in body  # 3 of 4 finished dial-out calls
    assert '<span class="dash-value" id="median-duration">2:00</span>' in body
    assert '<span class="dash-value" id="median-turn">900 ms</span>' in body
    assert "Sun 29 Nov: 1 completed" in body and "Mon 30 Nov: 2 completed" in body
    assert "Mon 30 Nov: 1 no answer" in body
    assert '<tr data-result="confirmed"><th scope="row">confirmed</th>' in body
    # a filter by workflow: nothing on the other one
    resp = page(client, staff, workflow=clinic["other_wf"].pk)
    assert '<span class="dash-value" id="total-calls">0</span>' in resp.content.decode()
    # a date range that leaves the 29th out
    resp = page(client, staff, **{"from": "2026-11-30", "to": "2026-11-30"})
    assert '<span class="dash-value" id="total-calls">3</span>' in resp.content.decode()


def test_login_and_membership_are_needed(client, clinic):
    assert client.get("/calls/dashboard/").status_code == 302
    assert client.get("/calls/dashboard/export.csv").status_code == 302
    stranger = factories.make_user(org=factories.make_org("elsewhere"), role="admin")
    resp = page(client, stranger, org=clinic["org"].pk)
    assert resp.status_code == 404  # another organisation's numbers look like none
    assert client.get("/calls/dashboard/export.csv", {"org": clinic["org"].pk}).status_code == 404


def test_linked_from_the_admin_index_and_the_live_list(client, clinic):
    client.force_login(factories.make_user(org=clinic["org"], role="viewer"))
    assert 'href="/calls/dashboard/"' in client.get("/admin/").content.decode()
    assert 'href="/calls/dashboard/"' in client.get("/calls/live/").content.decode()


def export(client, user, org):
    client.force_login(user)
    resp = client.get("/calls/dashboard/export.csv", {"org": org.pk, "from": "2026-11-01", "to": "2026-11-30"})
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode())))


@time_machine.travel(NOW, tick=False)
def test_export_is_shaped_for_the_role(client, clinic):
    add_call(clinic, created=NOW - timedelta(hours=1))
    staff_rows = export(client, factories.make_user(org=clinic["org"], role="staff"), clinic["org"])
    viewer_rows = export(client, factories.make_user(org=clinic["org"], role="viewer"), clinic["org"])
    (s,), (v,) = staff_rows, viewer_rows
    assert s["patient_name"] == "Ada Lovelace" and s["patient_phone"] == "+14155550123"
    assert "Yes I'll come" in s["transcript"] and s["outcome_notes"] == "Will bring her glasses."
    assert s["created_at"] == "2026-11-30 09:00:00" and s["timezone"] == "America/Los_Angeles"
    assert v["patient_name"] != "Ada Lovelace" and "Ada" not in v["patient_name"]
    assert v["patient_phone"] != "+14155550123" and v["patient_phone"].endswith("23")
    assert "transcript" not in v and "outcome_notes" not in v
    assert "Yes I'll come" not in str(viewer_rows) and "glasses" not in str(viewer_rows)
    assert v["outcome_result"] == "confirmed" and v["patient_external_id"] == "EHR-42"
    from audit.models import AuditEvent

    exports = AuditEvent.objects.filter(action="export", organization=clinic["org"])
    assert exports.count() == 2 and {e.object_type for e in exports} == {"calls.callsession"}


@time_machine.travel(NOW, tick=False)
def test_query_count_does_not_grow_with_the_calls(client, clinic):
    admin = factories.make_user(org=clinic["org"], role="admin")
    client.force_login(admin)

    def count(path):
        client.get(path)  # warm
        with CaptureQueriesContext(connection) as ctx:
            resp = client.get(path)
            if hasattr(resp, "streaming_content"):
                b"".join(resp.streaming_content)
        assert resp.status_code == 200
        return len(ctx.captured_queries)

    add_call(clinic, created=NOW - timedelta(hours=2), turn_ms=800)
    few = count("/calls/dashboard/"), count("/calls/dashboard/export.csv")
    for i in range(40):
        add_call(clinic, created=NOW - timedelta(days=i % 20, hours=1), turn_ms=500 + i,
                 wf=clinic["wf"] if i % 2 else clinic["other_wf"], result=["confirmed", "declined", None][i % 3])
    many = count("/calls/dashboard/"), count("/calls/dashboard/export.csv")
    assert few == many


@time_machine.travel(NOW, tick=False)
def test_bad_filters_fall_back_with_a_note_never_an_error(client, clinic):
    staff = factories.make_user(org=clinic["org"], role="staff")
    for params in ({"to": "9999-12-31"}, {"from": "0001-01-01"}, {"from": "yesterday"}, {"workflow": "999999"},
                   {"workflow": "1\x00"}, {"from": "2026-11-30", "to": "2020-01-01"}):
        resp = page(client, staff, **params)
        assert resp.status_code == 200, params
        assert b'class="live-note"' in resp.content, params
    client.force_login(staff)
    assert client.get("/calls/dashboard/export.csv", {"to": "9999-12-31"}).status_code == 200
    assert page(client, staff, org="not-a-number").status_code == 404
