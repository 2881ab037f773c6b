"""Staff pages speak words, not codes: end reasons, outcomes, speakers, plurals,
one spelling of organisation, and names in clear wherever the role allows."""

from __future__ import annotations

import pytest

from calls.models import CallSession
from campaigns.models import Campaign, CampaignTarget
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    org = factories.make_org("sunrise", name="Sunrise")
    workflow = factories.make_workflow(org, name="Reminder")
    ada = factories.make_patient(org, first_name="Ada", last_name="Lovelace", external_id="EHR-42")
    return dict(org=org, workflow=workflow, ada=ada,
                staff=factories.make_user("sam", org=org, role="staff"),
                viewer=factories.make_user("vic", org=org, role="viewer"))


def page(client, user, url, **params):
    client.force_login(user)
    response = client.get(url, params)
    assert response.status_code == 200, url
    return response.content.decode()


def test_end_reasons_and_outcomes_in_words(client, clinic):
    canceled = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="canceled",
                                   end_reason="campaign_canceled")
    done = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="completed",
                               end_reason="completed", transcript=[{"role": "assistant", "text": "Hello"},
                                                                   {"role": "user", "text": "Hi"}],
                               outcome={"result": "confirmed", "notes": "Brings glasses",
                                        "data": {"new_time": "Tuesday 10:30"}})
    call_page = page(client, clinic["staff"], f"/calls/{canceled.pk}/")
    assert "Campaign canceled" in call_page and "campaign_canceled" not in call_page.split("<script")[0]
    assert "No outcome recorded yet" not in call_page
    assert "No outcome was recorded: the call ended — campaign canceled." in call_page

    admin_page = page(client, clinic["staff"], f"/admin/calls/callsession/{done.pk}/change/")
    assert "<dt>New time</dt><dd>Tuesday 10:30</dd>" in admin_page
    assert "&quot;result&quot;" not in admin_page and '{"result"' not in admin_page  # no JSON
    assert "<strong>Bot:</strong> Hello" in admin_page and "<strong>Patient:</strong> Hi" in admin_page
    assert "assistant" not in admin_page.split('id="content"')[1].split("</form>")[0]

    history = page(client, clinic["staff"], f"/admin/patients/patient/{clinic['ada'].pk}/change/")
    assert "Campaign canceled" in history


def test_skipped_patients_and_pace_in_words(client, clinic):
    clinic["ada"].do_not_call = True
    clinic["ada"].save()
    campaign = Campaign.objects.create(organization=clinic["org"], workflow=clinic["workflow"], name="Flu",
                                       pace_per_minute=1)
    CampaignTarget.objects.create(campaign=campaign, patient=clinic["ada"], skip_reason="do_not_call")
    body = page(client, clinic["staff"], f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert "EHR-42 — Do not call" in body and "do_not_call" not in body
    assert "at most 1 call a minute" in body


def test_one_spelling_of_organisation(client, clinic):
    for url in ("/admin/campaigns/campaign/", "/admin/webhooks/webhookendpoint/", "/admin/calls/callsession/"):
        body = page(client, factories.make_user(is_superuser=True), url)
        assert "rganization" not in body.split('id="content"')[1].split("<footer")[0].replace(
            "organization__", "").replace("organization=", "").replace("organization_", ""), url


def test_staff_see_the_name_in_messages_confirmations_and_titles(client, clinic):
    ada = clinic["ada"]
    client.force_login(clinic["staff"])
    response = client.post(f"/admin/patients/patient/{ada.pk}/change/", {
        "organization": clinic["org"].pk, "external_id": "EHR-42", "first_name": "Ada", "last_name": "Lovelace",
        "date_of_birth": "", "phone": ada.phone, "preferred_language": "en", "timezone": "", "consent_to_call": "on",
        "data": "{}",
    }, follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert "Ada Lovelace (EHR-42)" in message and "•" not in message

    history = page(client, clinic["staff"], f"/admin/patients/patient/{ada.pk}/history/")
    assert "Change history: Ada Lovelace (EHR-42)" in history

    confirm = client.post("/admin/patients/patient/", {"action": "start_campaign", "_selected_action": [ada.pk]})
    body = confirm.content.decode()
    assert "Ada Lovelace (EHR-42) — Sunrise" in body and "this patient" in body and "patient(s)" not in body

    viewer_history = page(client, clinic["viewer"], f"/admin/patients/patient/{ada.pk}/history/")
    assert "Ada Lovelace" not in viewer_history  # a viewer's role keeps it masked


def test_the_add_workflow_form_starts_with_sensible_boxes_ticked_and_plain_labels(client, clinic):
    admin = factories.make_user("ann", org=clinic["org"], role="admin")
    body = page(client, admin, "/admin/organizations/workflow/add/")
    for day in (1, 2, 3, 4, 5):
        assert f'name="window_days" value="{day}" id="id_window_days_{day - 1}" checked' in body
    assert 'name="window_days" value="6" id="id_window_days_5" checked' not in body
    assert 'value="busy" id="id_retry_on_1" checked' in body
    assert "Longest call (seconds)" in body and "Max duration s" not in body


def test_unticking_every_day_says_so_in_words(client, clinic):
    from organizations.admin import WorkflowForm

    form = WorkflowForm(data={"window_days": []})
    assert not form.is_valid()
    assert form.errors["window_days"] == ["Tick at least one day calls may ring on."]


def test_a_refusal_is_a_styled_page(client, clinic):
    call = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="ringing")
    client.force_login(clinic["viewer"])
    response = client.post(f"/calls/{call.pk}/cancel/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "You may not do this" in body and "Only staff and admins may end calls." in body
    assert 'id="header"' in body  # the admin's frame, not a bare line


def test_a_locked_out_login_is_a_styled_page(client, settings):
    user = factories.make_user("locky", password="right-password-1")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": user.username, "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    response = client.post("/admin/login/", {"username": user.username, "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    body = response.content.decode()
    assert response.status_code in (403, 429)
    assert "Login locked for now" in body and 'id="header"' in body and "axes_reset" in body


def test_the_daily_room_is_a_link_only_while_it_exists_and_never_for_viewers(client, clinic):
    live = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="in_progress",
                               daily_room_url="https://clinic.daily.co/room-live")
    demo = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="in_progress",
                               daily_room_url="http://127.0.0.1:7871/rooms/sim-1")
    ended = factories.make_call(clinic["org"], clinic["workflow"], clinic["ada"], status="completed",
                                daily_room_url="https://clinic.daily.co/room-done")
    url = "/admin/calls/callsession/{}/change/"
    assert '<a href="https://clinic.daily.co/room-live"' in page(client, clinic["staff"], url.format(live.pk))
    demo_page = page(client, clinic["staff"], url.format(demo.pk))
    assert "simulated room: nothing to open" in demo_page and 'href="http://127.0.0.1:7871' not in demo_page
    ended_page = page(client, clinic["staff"], url.format(ended.pk))
    assert "deleted when the call ended" in ended_page and 'href="https://clinic.daily.co/room-done"' not in ended_page
    assert "clinic.daily.co" not in page(client, clinic["viewer"], url.format(live.pk))
