"""The campaign page and actions in the admin, the CSV import, the live socket, constant query counts."""

from __future__ import annotations

import itertools

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from calls.broadcast import load_call, send_call_messages, serialize_call
from calls.models import CallSession, CallStatus
from campaigns import services
from campaigns.broadcast import campaign_group
from campaigns.models import Campaign, CampaignStatus, CampaignTarget
from patients.models import Patient
from tests import factories
from tests.api_fixtures import auth
from tests.test_live_pages import _socket


@pytest.fixture(autouse=True)
def _deployment_configured(settings):
    """A campaign's start checks the deployment as a call's does (calls.rules); fake servers set their own key."""
    settings.DAILY_API_KEY = settings.DAILY_API_KEY or "key-for-tests"


_markers = itertools.count(1)


async def _drain(comm, campaign_id, *, until=None) -> list[dict]:
    """What the campaign socket sent before a marker sent now through the
    campaign's group: a socket's messages arrive in the order they were sent,
    so what comes before the marker is all there was.

    A ``campaign.update`` recount is sent by a timer (``RECOUNT_AFTER_S``) after
    a call update, not in line with it: with ``until``, read up to the first
    message it accepts (the recount) before sending the marker.
    """
    out = []
    if until is not None:
        while True:
            message = await comm.receive_json_from(timeout=5)
            if not _is_marker(message):
                out.append(message)
                if until(message):
                    break
    marker = f"drain-marker-{next(_markers)}"
    await get_channel_layer().group_send(
        campaign_group(campaign_id), {"type": "campaign.update", "campaign": {"marker": marker}})
    while True:
        message = await comm.receive_json_from(timeout=5)
        if _is_marker(message):
            if message["campaign"]["marker"] == marker:
                return out
        else:
            out.append(message)


def _is_marker(message) -> bool:  # an earlier drain's marker is not news either
    return str(message.get("campaign", {}).get("marker", "")).startswith("drain-marker-")


def _recount(message) -> bool:
    return message["type"] == "campaign.update"


@pytest.fixture
def world(db):
    a = factories.make_org("clinic-a", name="Clinic A")
    b = factories.make_org("clinic-b", name="Clinic B")
    wa = factories.make_workflow(a, slug="reminder", name="Reminder")
    patients = [factories.make_patient(a, external_id=f"A{i}", first_name="Grace", last_name=f"Hopper{i}")
                for i in range(3)]
    return {
        "a": a, "b": b, "wa": wa, "patients": patients,
        "staff": factories.make_user("staff-a", org=a, role="staff"),
        "viewer": factories.make_user("viewer-a", org=a, role="viewer"),
        "other": factories.make_user("staff-b", org=b, role="staff"),
    }


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_url(campaign) -> str:
    return f"/admin/campaigns/campaign/{campaign.pk}/change/"


def draft(world, **kwargs):
    return services.create_campaign(organization=world["a"], workflow=world["wa"], name="Flu", patients=[],
                                    start=False, **kwargs)


def upload(client, campaign, text: str):
    return client.post(f"/admin/campaigns/campaign/{campaign.pk}/upload/",
                       {"file": SimpleUploadedFile("list.csv", text.encode(), content_type="text/csv")})


def test_csv_with_one_bad_row_creates_nothing_and_names_the_row(world):
    campaign = draft(world)
    client = as_user(world["staff"])
    before = Patient.objects.count()
    csv = (
        "external_id,first_name,last_name,phone,date_of_birth\n"
        "A0,,,,\n"
        "NEW-1,Alan,Turing,+14155550101,1912-06-23\n"
        "NEW-2,Ada,King,not-a-phone,1815-12-10\n"
        "A1,,,,\n"
    )
    response = upload(client, campaign, csv)
    assert response.status_code == 400
    body = response.content.decode()
    assert "nothing was created" in body
    assert "Row 3 (line 4): phone:" in body
    assert Patient.objects.count() == before and not CampaignTarget.objects.exists()

    ok = upload(client, campaign, csv.replace("not-a-phone", "+14155550102"))
    assert ok.status_code == 302
    assert Patient.objects.count() == before + 2
    assert CampaignTarget.objects.filter(campaign=campaign).count() == 4
    assert Patient.objects.get(external_id="NEW-1").date_of_birth.isoformat() == "1912-06-23"

    unknown = upload(client, campaign, "external_id\nA2\nNOPE\n")
    assert unknown.status_code == 400
    assert "Row 2 (line 3): external_id: no patient has the external id &#x27;NOPE&#x27;" in unknown.content.decode()
    assert CampaignTarget.objects.filter(campaign=campaign).count() == 4


def test_staff_start_pause_resume_cancel_viewer_sees_no_buttons(world, fake_daily, fake_runner):
    campaign = draft(world)
    services.add_targets(campaign, world["patients"])
    staff, viewer = as_user(world["staff"]), as_user(world["viewer"])
    body = viewer.get(page_url(campaign)).content.decode()
    assert "Start campaign" not in body and 'data-action=' not in body and "upload-form" not in body
    assert viewer.post(f"/admin/campaigns/campaign/{campaign.pk}/start/").status_code == 403
    assert "Hopper" not in body

    body = staff.get(page_url(campaign)).content.decode()
    assert 'data-action="start"' in body and 'id="upload-form"' in body
    assert staff.post(f"/admin/campaigns/campaign/{campaign.pk}/start/").status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    body = staff.get(page_url(campaign)).content.decode()
    assert 'data-action="pause"' in body and 'data-action="cancel"' in body and "upload-form" not in body
    for call in CallSession.objects.filter(campaign_id=campaign.pk):
        assert f'href="/calls/{call.pk}/"' in body
    assert "Grace Hopper0" in body
    assert "Grace Hopper0" not in viewer.get(page_url(campaign)).content.decode()

    staff.post(f"/admin/campaigns/campaign/{campaign.pk}/pause/")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    staff.post(f"/admin/campaigns/campaign/{campaign.pk}/resume/")
    staff.post(f"/admin/campaigns/campaign/{campaign.pk}/cancel/")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELED
    assert CallSession.objects.filter(campaign_id=campaign.pk, status=CallStatus.CANCELED).count() == 3


def test_other_organisation_cannot_see_or_touch(world):
    campaign = draft(world)
    other = as_user(world["other"])
    assert other.get(page_url(campaign)).status_code == 404
    assert other.post(f"/admin/campaigns/campaign/{campaign.pk}/start/").status_code == 404
    assert "Flu" not in other.get("/admin/campaigns/campaign/").content.decode()


def test_start_a_campaign_action_on_selected_patients(world):
    world["patients"][2].do_not_call = True
    world["patients"][2].save()
    client = as_user(world["staff"])
    ids = [str(p.pk) for p in world["patients"]]
    form = client.post("/admin/patients/patient/", {"action": "start_campaign", "_selected_action": ids})
    assert form.status_code == 200 and b"Start a campaign" in form.content
    done = client.post("/admin/patients/patient/", {
        "action": "start_campaign", "_selected_action": ids, "apply": "yes", "name": "Reminders",
        "workflow": str(world["wa"].pk), "pace_per_minute": "12",
    })
    campaign = Campaign.objects.get()
    assert done.status_code == 302 and done["Location"] == page_url(campaign)
    assert campaign.status == CampaignStatus.RUNNING and campaign.pace_per_minute == 12
    assert campaign.created_by_user == world["staff"]
    assert CallSession.objects.filter(campaign_id=campaign.pk).count() == 2
    assert CampaignTarget.objects.get(patient=world["patients"][2]).skip_reason == "do_not_call"
    # Viewers do not get the action.
    viewer = as_user(world["viewer"])
    assert b"start_campaign" not in viewer.get("/admin/patients/patient/").content


def _queries(client, url) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_page_and_api_query_counts_do_not_grow_with_the_campaign(world):
    from organizations.models import ApiKey

    _key, raw = ApiKey.generate(world["a"])
    campaign = services.create_campaign(organization=world["a"], workflow=world["wa"], name="Big",
                                        patients=world["patients"])
    client = as_user(world["staff"])
    api = Client()
    page_before = _queries(client, page_url(campaign))
    api.get(f"/api/campaigns/{campaign.pk}", **auth(raw))
    with CaptureQueriesContext(connection) as ctx:
        api.get(f"/api/campaigns/{campaign.pk}", **auth(raw))
    api_before = len(ctx.captured_queries)

    more = [factories.make_patient(world["a"], do_not_call=(i % 5 == 0)) for i in range(40)]
    big = services.create_campaign(organization=world["a"], workflow=world["wa"], name="Bigger",
                                   patients=world["patients"] + more)
    CallSession.objects.filter(campaign_id=big.pk).update(status=CallStatus.COMPLETED, outcome={"result": "confirmed"})
    assert _queries(client, page_url(big)) == page_before
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(f"/api/campaigns/{big.pk}", **auth(raw)).status_code == 200
    assert len(ctx.captured_queries) == api_before
    with CaptureQueriesContext(connection) as ctx:
        assert api.get("/api/campaigns", **auth(raw)).status_code == 200
    list_two = len(ctx.captured_queries)
    draft(world)
    with CaptureQueriesContext(connection) as ctx:
        api.get("/api/campaigns", **auth(raw))
    # One campaign more costs its own few queries (counts, skipped), not one per target.
    assert len(ctx.captured_queries) <= list_two + 3


@pytest.mark.django_db(transaction=True)
async def test_campaign_socket_progress_per_role(world):
    campaign = await sync_to_async(services.create_campaign)(
        organization=world["a"], workflow=world["wa"], name="Live", patients=world["patients"])
    path = f"/ws/campaigns/{campaign.pk}/"
    other, ok = await _socket(world["other"], path)
    assert not ok
    await other.disconnect()
    staff, ok1 = await _socket(world["staff"], path)
    viewer, ok2 = await _socket(world["viewer"], path)
    assert ok1 and ok2
    first = await _drain(staff, campaign.pk)
    assert first[0]["type"] == "campaign.update" and first[0]["campaign"]["counts"]["pending"] == 3
    await _drain(viewer, campaign.pk)

    call = await CallSession.objects.filter(campaign_id=campaign.pk).afirst()
    await CallSession.objects.filter(pk=call.pk).aupdate(status=CallStatus.COMPLETED, outcome={"result": "confirmed"})
    payload = await sync_to_async(lambda: serialize_call(load_call(call.pk)))()
    await send_call_messages(payload, [])
    got_staff = await _drain(staff, campaign.pk, until=_recount)
    got_viewer = await _drain(viewer, campaign.pk, until=_recount)
    assert [m["type"] for m in got_staff] == ["call.update", "campaign.update"]
    assert got_staff[-1]["campaign"]["counts"]["reached"] == 1
    assert got_staff[-1]["campaign"]["results"] == {"confirmed": 1}
    assert got_staff[0]["call"]["patient"]["name"].startswith("Grace Hopper")
    assert "Hopper" not in str(got_viewer) and got_viewer[-1]["campaign"]["counts"]["reached"] == 1

    await sync_to_async(services.pause_campaign)(campaign)
    paused = await _drain(staff, campaign.pk)
    assert [m["type"] for m in paused] == ["campaign.update"] and paused[0]["campaign"]["status"] == "paused"
    await staff.disconnect()
    await viewer.disconnect()
