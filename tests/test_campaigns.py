"""Campaign rules with a frozen clock: pace, skips, pause/resume, completion, cancel.

The dispatcher's ticks are run by the test at chosen (frozen) moments; calls
start for real against the fake Daily and bot runner (eager Celery), and the
bot's side is played by feeding its status messages to the server's handler.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from calls import dispatcher
from calls.events import apply_bot_message
from calls.tasks import start_call
from calls.models import FINAL_STATUSES, CallSession, CallStatus
from campaigns import selectors, services
from campaigns.models import Campaign, CampaignStatus
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

# A Monday, 10:00 in New York: inside the default calling window.
T0 = dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.timezone.utc)
NY = ZoneInfo("America/New_York")

HOLDING = (CallStatus.STARTING, CallStatus.RINGING, CallStatus.WAITING, CallStatus.IN_PROGRESS)


@pytest.fixture(autouse=True)
def _deployment_configured(settings):
    """A campaign's start checks the deployment as a call's does (calls.rules); fake servers set their own key."""
    settings.DAILY_API_KEY = settings.DAILY_API_KEY or "key-for-tests"


def tick(now):
    """One tick of the calls' dispatcher: the campaigns' step, then promote and hand (eager starts)."""
    return dispatcher.dispatch(start_call.delay, now, reap=False)


class Bot:
    """Plays the bots of started calls: answer, report an outcome, end after `talk_s`."""

    def __init__(self, talk_s=20):
        self.talk_s = talk_s
        self.seq: dict = {}

    def send(self, call_id, event, data=None, at=None):
        seq = self.seq.get(call_id, 0) + 1
        self.seq[call_id] = seq
        apply_bot_message(call_id, {"seq": seq, "event": event, "at": (at or dt.datetime.now(dt.timezone.utc)).isoformat(),
                                    "data": data or {}})

    def step(self, now):
        for call in CallSession.objects.filter(status=CallStatus.STARTING):
            self.send(call.pk, "dialout_answered", {})
        for call in CallSession.objects.filter(status=CallStatus.IN_PROGRESS):
            if (now - call.answered_at).total_seconds() >= self.talk_s:
                self.send(call.pk, "outcome", {"result": "confirmed", "notes": "", "data": {}})
                self.send(call.pk, "ended", {"reason": "completed"})


def starts_in_any_minute(campaign) -> int:
    times = sorted(CallSession.objects.filter(campaign_id=campaign.pk, started_at__isnull=False)
                   .values_list("started_at", flat=True))
    most = 0
    for i, first in enumerate(times):
        most = max(most, sum(1 for t in times[i:] if t < first + dt.timedelta(seconds=60)))
    return most


_ny_numbers = iter(range(10**6))


def ny_patient(org, **kwargs):
    """A patient with a New York number: their calling hours are New York's, as the clinic's."""
    kwargs.setdefault("phone", f"+1212555{next(_ny_numbers) % 10000:04d}")
    return factories.make_patient(org, **kwargs)


@pytest.fixture
def clinic(db):
    org = factories.make_org("camp-clinic", timezone="America/New_York", max_concurrent_calls=5)
    # The default calling hours (09:00-19:00, Monday to Friday), in New York.
    workflow = factories.make_workflow(org, slug="reminder", window_start=dt.time(9), window_end=dt.time(19),
                                       window_days=[1, 2, 3, 4, 5])
    return org, workflow


def test_fifty_patients_paced_skipped_paused_resumed_completed(clinic, fake_daily, fake_runner):
    org, workflow = clinic
    fake_runner.cli_transport = "daily"
    patients = [ny_patient(org, external_id=f"P{i:03d}") for i in range(50)]
    for p in patients[:3]:
        p.do_not_call = True
        p.save()
    with time_machine.travel(T0, tick=False) as clock:
        campaign = services.create_campaign(
            organization=org, workflow=workflow, name="Reminders", patients=patients, pace_per_minute=30
        )
        assert campaign.status == CampaignStatus.RUNNING
        assert CallSession.objects.filter(campaign_id=campaign.pk).count() == 47
        assert {(s["external_id"], s["reason"]) for s in selectors.skipped(campaign)} == {
            ("P000", "do_not_call"), ("P001", "do_not_call"), ("P002", "do_not_call")
        }
        bot = Bot(talk_s=2)
        most_holding = 0

        def run(seconds, step=2):
            nonlocal most_holding
            for _ in range(0, seconds, step):
                now = dt.datetime.now(dt.timezone.utc)
                tick(now)
                bot.step(now)
                most_holding = max(most_holding, CallSession.objects.filter(status__in=HOLDING).count())
                clock.shift(step)

        run(40)
        started_before_pause = CallSession.objects.filter(campaign_id=campaign.pk, started_at__isnull=False).count()
        assert 5 < started_before_pause <= 30  # the cap of 5 turned over, within the minute's pace
        services.pause_campaign(campaign)
        in_flight = set(CallSession.objects.filter(campaign_id=campaign.pk, status__in=HOLDING).values_list("pk", flat=True))
        run(120)
        # Paused: nothing new started; what was in flight finished.
        assert CallSession.objects.filter(campaign_id=campaign.pk, started_at__isnull=False).count() == started_before_pause
        assert not CallSession.objects.filter(pk__in=in_flight).exclude(status__in=list(FINAL_STATUSES)).exists()
        services.resume_campaign(campaign)
        run(180)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert starts_in_any_minute(campaign) == 30  # the pace was reached, never exceeded
    assert most_holding == 5  # the cap was reached, never exceeded
    counts, results = selectors.progress(campaign)
    assert counts == {"pending": 0, "active": 0, "reached": 47, "unreachable": 0, "failed": 0, "skipped": 3,
                      "canceled": 0}
    assert sum(counts.values()) == 50
    assert results == {"confirmed": 47}
    # Each target was called exactly once.
    assert CallSession.objects.filter(campaign_id=campaign.pk).values("patient_id").distinct().count() == 47
    started = [body["session_id"] for body in fake_runner.started]
    assert len(started) == len(set(started)) == 47


def test_pace_holds_in_every_sixty_second_span(clinic, fake_daily, fake_runner):
    """Short calls free the pace budget only as their starts leave the 60-s span."""
    org, workflow = clinic
    patients = [ny_patient(org) for _ in range(25)]
    with time_machine.travel(T0, tick=False) as clock:
        campaign = services.create_campaign(organization=org, workflow=workflow, name="Fast", patients=patients,
                                            pace_per_minute=7)
        bot = Bot(talk_s=1)
        for _ in range(150):
            now = dt.datetime.now(dt.timezone.utc)
            tick(now)
            bot.step(now)
            clock.shift(1)
    assert starts_in_any_minute(campaign) == 7
    assert CallSession.objects.filter(campaign_id=campaign.pk, started_at__isnull=False).count() == 21


def test_cancel_cancels_every_call_not_started(clinic, fake_daily, fake_runner):
    org, workflow = clinic
    patients = [ny_patient(org) for _ in range(12)]
    with time_machine.travel(T0, tick=False):
        campaign = services.create_campaign(organization=org, workflow=workflow, name="C", patients=patients,
                                            pace_per_minute=5)
        tick(dt.datetime.now(dt.timezone.utc))
        services.cancel_campaign(campaign)
    assert campaign.status == CampaignStatus.CANCELED
    calls = CallSession.objects.filter(campaign_id=campaign.pk)
    assert calls.filter(status=CallStatus.STARTING).count() == 5  # in flight: they finish
    assert calls.filter(status=CallStatus.CANCELED, end_reason="campaign_canceled").count() == 7
    counts, _ = selectors.progress(campaign)
    assert counts["canceled"] == 7 and counts["active"] == 5
    # A later tick starts nothing of a canceled campaign.
    tick(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5))
    assert calls.filter(status=CallStatus.STARTING).count() == 5


def test_skip_reasons(clinic):
    org, workflow = clinic
    ok = ny_patient(org, external_id="OK")
    dnc = ny_patient(org, external_id="DNC", do_not_call=True)
    nocons = ny_patient(org, external_id="NOC", consent_to_call=False)
    bad = ny_patient(org, external_id="BAD", phone="12")
    campaign = services.create_campaign(organization=org, workflow=workflow, name="S",
                                        patients=[ok, dnc, nocons, bad])
    assert {s["external_id"]: s["reason"] for s in selectors.skipped(campaign)} == {
        "DNC": "do_not_call", "NOC": "no_consent", "BAD": "invalid_phone"
    }
    assert list(CallSession.objects.filter(campaign_id=campaign.pk).values_list("patient_id", flat=True)) == [ok.pk]
    counts, _ = selectors.progress(campaign)
    assert counts["skipped"] == 3 and counts["pending"] == 1


def test_dialin_only_workflow_refused(clinic):
    org, _ = clinic
    inbound = factories.make_workflow(org, slug="inbound", direction="dial_in")
    with pytest.raises(services.CallRefused) as exc:
        services.create_campaign(organization=org, workflow=inbound, name="X", patients=[ny_patient(org)])
    assert exc.value.code == "workflow_not_dialout"
    assert not Campaign.objects.exists()


def test_nothing_below_imports_campaigns():
    """Dependencies point one way: campaigns import calls, patients, organizations; none of those imports campaigns."""
    from tests.test_import_cycles import app_modules, import_graph

    graph = import_graph(app_modules())
    below = [m for m in graph if m.split(".")[0] in ("organizations", "patients", "calls", "botrunner", "botkit")]
    assert not [m for m in below if any(t.split(".")[0] == "campaigns" for t in graph[m])]
    assert "calls.models" in graph["campaigns.services"]


def test_follow_up_attempt_stays_in_the_campaign_held_until_released(clinic, fake_daily, fake_runner):
    org, workflow = clinic
    workflow.retry_on, workflow.max_attempts, workflow.retry_delays_min = ["busy"], 2, [5]
    workflow.save()
    patient = ny_patient(org)
    bot = Bot()
    with time_machine.travel(T0, tick=False) as clock:
        campaign = services.create_campaign(organization=org, workflow=workflow, name="Retry", patients=[patient])
        tick(dt.datetime.now(dt.timezone.utc))
        first = CallSession.objects.get(campaign_id=campaign.pk)
        bot.send(first.pk, "ended", {"reason": "busy"})
        follow = CallSession.objects.get(previous_attempt=first)
        assert (follow.campaign_id, follow.held, follow.status, follow.attempt) == (campaign.pk, True, "scheduled", 2)
        assert selectors.progress(campaign)[0]["pending"] == 1  # the latest attempt decides
        services.pause_campaign(campaign)
        clock.shift(6 * 60)
        tick(dt.datetime.now(dt.timezone.utc))
        follow.refresh_from_db()
        assert follow.status == "scheduled" and follow.held  # due, but the campaign is paused
        services.resume_campaign(campaign)
        tick(dt.datetime.now(dt.timezone.utc))
        follow.refresh_from_db()
        assert follow.status == CallStatus.STARTING and not follow.held


def test_ending_a_campaign_queues_campaign_finished_and_starting_it_is_audited(clinic, fake_daily, fake_runner):
    from audit.models import AuditEvent
    from webhooks.models import WebhookDelivery, WebhookEndpoint

    org, workflow = clinic
    endpoint = WebhookEndpoint.objects.create(organization=org, url="http://127.0.0.1:9/hook",
                                              events=["campaign.finished"])
    staff = factories.make_user(org=org, role="staff")
    patients = [ny_patient(org) for _ in range(3)]
    with time_machine.travel(T0, tick=False):
        campaign = services.create_campaign(organization=org, workflow=workflow, name="Flu", patients=patients,
                                            created_by_user=staff)
        assert not WebhookDelivery.objects.exists()
        services.cancel_campaign(campaign)
    (delivery,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert delivery.event_type == "campaign.finished"
    assert delivery.payload["campaign_id"] == str(campaign.pk) and delivery.payload["status"] == "canceled"
    assert delivery.payload["counts"]["canceled"] == 3
    (row,) = AuditEvent.objects.filter(action="start_campaign")
    assert row.object_id == str(campaign.pk) and row.user_id == staff.pk
