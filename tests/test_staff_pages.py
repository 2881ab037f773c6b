"""Staff pages: times in the organisation's zone, one face for a patient per user,
the patient's calls on their page, and call search scoped to what a role may see."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine

from calls.models import CallEvent, CallSession
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 18, 30, tzinfo=dt_timezone.utc)
CREATED = datetime(2026, 11, 30, 18, 30, 5, tzinfo=dt_timezone.utc)  # 10:30:05 in LA, 13:30 in New York


@pytest.fixture
def clinic():
    org = factories.make_org("sunrise", name="Sunrise", timezone="America/Los_Angeles")
    wf = factories.make_workflow(org, slug="reminder", name="Reminder", outcome_results=["confirmed", "declined"])
    ada = factories.make_patient(org, first_name="Ada", last_name="Lovelace", phone="+14155550123",
                                 external_id="EHR-42", timezone="America/New_York")
    grace = factories.make_patient(org, first_name="Grace", last_name="Hopper", phone="+14155550199",
                                   external_id="EHR-77")
    call = factories.make_call(org, wf, ada, status="completed", end_reason="completed", dialout_attempts=2,
                               outcome={"result": "confirmed", "notes": "", "data": {}},
                               answered_at=CREATED + timedelta(seconds=10), ended_at=CREATED + timedelta(seconds=70))
    other = factories.make_call(org, wf, grace, status="no_answer", end_reason="voicemail")
    CallSession.objects.filter(pk__in=[call.pk, other.pk]).update(created_at=CREATED)
    call.refresh_from_db()
    return dict(org=org, wf=wf, ada=ada, grace=grace, call=call, other=other,
                staff=factories.make_user("sam", org=org, role="staff"),
                viewer=factories.make_user("vic", org=org, role="viewer"))


def get(client, user, url, **params):
    client.force_login(user)
    resp = client.get(url, params)
    assert resp.status_code == 200, url
    return resp.content.decode()


# --- time ------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_times_are_in_the_organisations_zone_and_the_patients_where_it_differs(client, clinic):
    staff, call = clinic["staff"], clinic["call"]
    admin_list = get(client, staff, "/admin/calls/callsession/")
    assert "2026-11-30 10:30:05 (patient 13:30 EST)" in admin_list  # Grace has no zone of her own: no note
    admin_page = get(client, staff, f"/admin/calls/callsession/{call.pk}/change/")
    assert "2026-11-30 10:30:05 (patient 13:30 EST)" in admin_page
    assert "2026-11-30 10:31:15 (patient 13:31 EST)" in admin_page  # ended
    CallEvent.objects.create(call=call, seq=1, at=CREATED, kind="joined", data={})
    engineer = factories.make_user(is_superuser=True)  # the events inline is for engineers
    admin_page = get(client, engineer, f"/admin/calls/callsession/{call.pk}/change/")
    assert "10:30:05.000" in admin_page  # the events inline too
    live_page = get(client, staff, f"/calls/{call.pk}/")
    assert 'data-tz="America/Los_Angeles"' in live_page  # the page's script formats in this zone too
    assert ">2026-11-30 10:30:05</time>" in live_page and "(patient 13:30 EST)" in live_page
    assert ">10:30:15</time>" in live_page  # answered
    live_list = get(client, staff, "/calls/live/")
    assert ">10:30:05</time>" in live_list and ">18:30:05<" not in live_list
    patient_page = get(client, staff, f"/admin/patients/patient/{clinic['ada'].pk}/change/")
    assert "2026-11-30 10:30 (patient 13:30 EST)" in patient_page  # the history has the date


# --- one face for a patient -----------------------------------------------------------------


def pages(clinic):
    call, ada = clinic["call"], clinic["ada"]
    return [
        f"/admin/patients/patient/{ada.pk}/change/",
        "/admin/patients/patient/",
        f"/admin/calls/callsession/{call.pk}/change/",
        "/admin/calls/callsession/",
        "/calls/live/",
        f"/calls/{call.pk}/",
    ]


def test_staff_see_the_name_in_clear_everywhere(client, clinic):
    for url in pages(clinic):
        body = get(client, clinic["staff"], url)
        assert "Ada Lovelace" in body, url
        assert "A•• L•••••••" not in body, url  # never masked for the same user elsewhere on the page
    heading = get(client, clinic["staff"], f"/admin/patients/patient/{clinic['ada'].pk}/change/")
    assert "<h2>Ada Lovelace (EHR-42)</h2>" in heading
    assert re.search(r"&rsaquo; Ada Lovelace \(EHR-42\)\s*</div>", heading)  # the breadcrumb
    call_page = get(client, clinic["staff"], f"/admin/calls/callsession/{clinic['call'].pk}/change/")
    assert "+14155550123" in call_page


def test_viewers_see_it_masked_everywhere(client, clinic):
    for url in pages(clinic):
        body = get(client, clinic["viewer"], url)
        assert "Lovelace" not in body and "+14155550123" not in body, url
        assert "A•• L•••••••" in body, url


def test_the_call_patient_banner_names_the_patient_in_clear_for_staff(client, clinic, fake_daily, fake_runner):
    client.force_login(clinic["staff"])
    resp = client.post(f"/admin/patients/patient/{clinic['ada'].pk}/call/", {"workflow": clinic["wf"].pk}, follow=True)
    assert "Calling Ada Lovelace (EHR-42) with Reminder." in [str(m) for m in resp.context["messages"]]


def test_the_patient_page_lists_the_patients_calls(client, clinic):
    body = get(client, clinic["staff"], f"/admin/patients/patient/{clinic['ada'].pk}/change/")
    section = body[body.index('id="patient-calls"'):]
    section = section[: section.index("</table>")]
    call = clinic["call"]
    assert f'href="/calls/{call.pk}/"' in section
    assert "Completed" in section and "confirmed" in section and "<td>2</td>" in section  # status, outcome, attempt
    assert str(clinic["other"].pk) not in section  # Grace's call is not Ada's


# --- find --------------------------------------------------------------------------------------


def found(client, user, **params) -> set:
    body = get(client, user, "/admin/calls/callsession/", **params)
    return set(re.findall(r'href="/calls/([0-9a-f-]{36})/"', body))


def test_search_by_name_phone_and_external_id_for_those_who_see_them(client, clinic):
    ada_call, grace_call = str(clinic["call"].pk), str(clinic["other"].pk)
    elsewhere = factories.make_org("elsewhere")
    twin = factories.make_patient(elsewhere, first_name="Ada", last_name="Lovelace", phone="+14155550123")
    factories.make_call(elsewhere, factories.make_workflow(elsewhere), twin)
    staff, viewer = clinic["staff"], clinic["viewer"]
    assert found(client, staff, q="Lovelace") == {ada_call}  # never the other organisation's Ada
    assert found(client, staff, q="ada lovelace") == {ada_call}
    assert found(client, staff, q="(415) 555-0199") == {grace_call}
    assert found(client, staff, q="EHR-42") == {ada_call}
    # a viewer finds by the EHR id, never by what is masked for them
    assert found(client, viewer, q="EHR-77") == {grace_call}
    assert found(client, viewer, q="Lovelace") == set()
    assert found(client, viewer, q="4155550123") == set()


def test_filter_by_outcome_result_and_end_reason(client, clinic):
    ada_call, grace_call = str(clinic["call"].pk), str(clinic["other"].pk)
    assert found(client, clinic["staff"], outcome="confirmed") == {ada_call}
    assert found(client, clinic["staff"], outcome="__none__") == {grace_call}
    assert found(client, clinic["viewer"], end_reason="voicemail") == {grace_call}


def test_the_live_lists_result_column_separates_outcome_and_end_reason(client, clinic):
    body = get(client, clinic["staff"], "/calls/live/")
    assert '<span data-field="outcome-result" class="outcome-result">confirmed</span> <span data-field="end-reason" class="end-reason">Completed</span>' in body
    assert '<span data-field="outcome-result" class="outcome-result"></span> <span data-field="end-reason" class="end-reason">Voicemail answered</span>' in body
