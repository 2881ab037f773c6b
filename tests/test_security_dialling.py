"""What holds at the moment of dialling: do-not-call (per record and per number), the
calling window in the patient's current zone, and one live call per number."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from calls import dispatcher, rules
from calls.events import apply_bot_message
from calls.models import CallEvent, CallSession
from calls.services import CallRefused, place_call
from calls.tasks import start_call
from campaigns import services as campaigns
from campaigns.models import CampaignTarget
from tests import factories

pytestmark = pytest.mark.django_db

# A Monday, 10:00 in New York.
T0 = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.timezone.utc)


def tick(callbacks, now=None):
    with callbacks(execute=True):
        return dispatcher.dispatch(start_call.delay, now, reap=False)


def place(callbacks, **kwargs):
    with callbacks(execute=True):
        return place_call(**kwargs)


def status(call):
    return CallSession.objects.get(pk=call.pk).status


def finish(call):
    apply_bot_message(call.pk, {"seq": 1, "event": "dialout_answered", "data": {}})
    apply_bot_message(call.pk, {"seq": 2, "event": "ended", "data": {"reason": "completed"}})


# --- do-not-call and consent, checked again when the call finally dials ---------------------


@pytest.mark.parametrize("change", [{"do_not_call": True}, {"consent_to_call": False}])
def test_a_call_waiting_for_a_slot_is_not_rung_once_the_patient_is_marked(
    org, workflow, fake_daily, fake_runner, django_capture_on_commit_callbacks, change,
):
    org.max_concurrent_calls = 1
    org.save()
    first = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow,
                  patient=factories.make_patient(org))
    patient = factories.make_patient(org)
    waiting = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow, patient=patient)
    assert (status(first), status(waiting)) == ("starting", "queued")
    type(patient).objects.filter(pk=patient.pk).update(**change)  # staff mark the patient while it waits
    finish(first)
    tick(django_capture_on_commit_callbacks)
    call = CallSession.objects.get(pk=waiting.pk)
    assert call.status == "canceled" and call.end_reason == ("do_not_call" if "do_not_call" in change else "no_consent")
    assert len(fake_runner.requests_to("POST /start")) == 1  # only the first call's bot


def test_a_released_campaign_call_is_not_rung_once_the_patient_is_do_not_call(
    org, workflow, fake_daily, fake_runner, django_capture_on_commit_callbacks, settings,
):
    org.max_concurrent_calls = 1
    org.save()
    patients = [factories.make_patient(org) for _ in range(2)]
    with time_machine.travel(T0, tick=False):
        campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=patients,
                                             pace_per_minute=10)
        tick(django_capture_on_commit_callbacks, T0)
        calls = list(CallSession.objects.filter(campaign_id=campaign.pk).order_by("created_at", "pk"))
        assert sorted(status(c) for c in calls) == ["queued", "starting"]
        waiting = next(c for c in calls if status(c) == "queued")
        type(waiting.patient).objects.filter(pk=waiting.patient_id).update(do_not_call=True)
        finish(next(c for c in calls if c.pk != waiting.pk))
        tick(django_capture_on_commit_callbacks, T0)
    assert status(waiting) == "canceled"
    assert CallSession.objects.get(pk=waiting.pk).end_reason == "do_not_call"
    assert len(fake_runner.requests_to("POST /start")) == 1


# --- do-not-call per number -----------------------------------------------------------------


def test_a_do_not_call_number_is_refused_under_another_record_or_as_a_bare_number(org, workflow):
    factories.make_patient(org, phone="+14155550177", do_not_call=True, first_name="Grace")
    namesake = factories.make_patient(org, phone="+14155550177", first_name="Someone", last_name="Else")
    other = factories.make_patient(org, phone="+14155550188")
    for kwargs in ({"patient": namesake}, {"patient": other, "phone_number": "+1 415 555 0177"}):
        with pytest.raises(CallRefused) as exc:
            place_call(organization=org, workflow=workflow, **kwargs)
        assert exc.value.code == "do_not_call" and exc.value.status == 409
    assert not CallSession.objects.exists()


def test_a_campaign_skips_a_do_not_call_number_under_another_name(org, workflow, settings):
    settings.DAILY_API_KEY = "key-for-tests"
    factories.make_patient(org, phone="+14155550177", do_not_call=True)
    namesake = factories.make_patient(org, phone="+14155550177", first_name="Someone")
    fine = factories.make_patient(org, phone="+14155550199")
    campaign = campaigns.create_campaign(organization=org, workflow=workflow, name="Flu", patients=[namesake, fine])
    skips = dict(CampaignTarget.objects.filter(campaign=campaign).values_list("patient_id", "skip_reason"))
    assert skips == {namesake.pk: "do_not_call", fine.pk: ""}
    assert list(CallSession.objects.values_list("patient_id", flat=True)) == [fine.pk]


def test_a_number_marked_do_not_call_after_the_call_was_placed_is_not_dialled(
    org, workflow, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    org.max_concurrent_calls = 1
    org.save()
    first = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow,
                  patient=factories.make_patient(org))
    patient = factories.make_patient(org, phone="+14155550166")
    waiting = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow, patient=patient)
    factories.make_patient(org, phone="+14155550166", do_not_call=True)  # the same number, another record
    finish(first)
    tick(django_capture_on_commit_callbacks)
    assert status(waiting) == "canceled" and CallSession.objects.get(pk=waiting.pk).end_reason == "do_not_call"


# --- the window, in the patient's zone as it is when dialling ----------------------------------


def test_a_waiting_call_whose_patient_moved_zone_waits_for_the_window_there(
    org, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    """Placed at 10:00 New York time for a New York patient; while it waits the patient's zone is
    changed to Honolulu (05:00 there): it is not rung, but scheduled for 09:00 Honolulu time."""
    org.max_concurrent_calls = 1
    org.timezone = "America/New_York"
    org.save()
    workflow = factories.make_workflow(org, slug="hours", window_start=dt.time(9), window_end=dt.time(19),
                                       window_days=[1, 2, 3, 4, 5])
    with time_machine.travel(T0, tick=False):
        # Both patients are in New York by their record (a +1415 number alone says
        # Los Angeles, 07:00 there, where the first call could not ring yet).
        first = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow,
                      patient=factories.make_patient(org, timezone="America/New_York"))
        patient = factories.make_patient(org, timezone="America/New_York")
        waiting = place(django_capture_on_commit_callbacks, organization=org, workflow=workflow, patient=patient)
        assert status(waiting) == "queued"
        type(patient).objects.filter(pk=patient.pk).update(timezone="Pacific/Honolulu")
        finish(first)
        tick(django_capture_on_commit_callbacks, T0)
    call = CallSession.objects.get(pk=waiting.pk)
    assert call.status == "scheduled"
    assert call.scheduled_for == dt.datetime(2026, 12, 7, 19, 0, tzinfo=dt.timezone.utc)  # 09:00 in Honolulu
    assert len(fake_runner.requests_to("POST /start")) == 1
    assert CallEvent.objects.filter(call_id=call.pk, kind="status", data__reason="window_closed").exists()


# --- one live call per number ------------------------------------------------------------------


def test_one_number_is_in_at_most_one_live_call(
    org, workflow, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    """Four start-calls to one number: one rings, the others wait their turn (one at a time)."""
    org.max_concurrent_calls = 10
    org.save()
    patient = factories.make_patient(org, phone="+14155550155")
    calls = [place(django_capture_on_commit_callbacks, organization=org, workflow=workflow, patient=patient)
             for _ in range(4)]
    assert sorted(status(c) for c in calls) == ["queued"] * 3 + ["starting"]
    assert len(fake_runner.requests_to("POST /start")) == 1
    assert CallEvent.objects.filter(kind="waiting_for_number").count() == 3
    assert tick(django_capture_on_commit_callbacks).handed == 0  # the number is still in a call
    live = CallSession.objects.get(status="starting")
    finish(live)
    assert tick(django_capture_on_commit_callbacks).handed == 1
    assert sorted(status(c) for c in calls) == ["completed"] + ["queued"] * 2 + ["starting"]
    assert len(fake_runner.requests_to("POST /start")) == 2


def test_calls_to_other_numbers_are_not_held_up_by_a_busy_one(
    org, workflow, fake_daily, fake_runner, django_capture_on_commit_callbacks,
):
    org.max_concurrent_calls = 10
    org.save()
    busy = factories.make_patient(org, phone="+14155550144")
    for _ in range(3):
        place(django_capture_on_commit_callbacks, organization=org, workflow=workflow, patient=busy)
    others = [place(django_capture_on_commit_callbacks, organization=org, workflow=workflow,
                    patient=factories.make_patient(org)) for _ in range(2)]
    assert [status(c) for c in others] == ["starting", "starting"]


def test_the_rules_read_the_number_do_not_call_once_for_a_campaign(org, django_assert_max_num_queries):
    patients = [factories.make_patient(org) for _ in range(30)]
    with django_assert_max_num_queries(1):
        found = rules.do_not_call_numbers(org.pk, [p.phone for p in patients])
    assert found == set()
