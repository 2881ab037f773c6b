"""The dashboard and the CSV export: figures in the organisation's zone, scoping,
the export's role shaping, a query count that does not grow with the calls, and
the daily roll-up (calls.rollup) the figures are read from: equal to a count of
every call and event, kept by the state machine."""

from __future__ import annotations

import csv
import io
import math
import random
from collections import Counter
from datetime import date, datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from calls import reports, rollup
from calls.events import apply_bot_message
from calls.models import FINAL_STATUSES, CallDay, CallEvent, CallSession, TurnBand, TurnCount
from calls.state import transition
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
    """A call as the system makes one: placed at ``created``, moved by the state machine
    (which keeps the dashboard's roll-up), the bot's outcome and metrics before its end."""
    with time_machine.travel(created, tick=False):
        call = factories.make_call(
            c["org"], wf or c["wf"], c["patient"],
            transcript=transcript or [{"role": "assistant", "text": "Hello Ada"}, {"role": "user", "text": "Yes I'll come"}],
            dialout_attempts=1,
        )
    assert transition(call.pk, "starting", at=created + timedelta(seconds=1))
    if answered_s is not None:
        assert transition(call.pk, "in_progress", at=created + timedelta(seconds=answered_s))
    else:
        assert transition(call.pk, "ringing", at=created + timedelta(seconds=2))
    if result:
        CallSession.objects.filter(pk=call.pk).update(
            outcome={"result": result, "notes": "Will bring her glasses.", "data": {}})
    if turn_ms is not None:
        CallEvent.objects.create(call=call, seq=1, at=created, kind="metrics", data={"turn_ms": turn_ms})
    ended = created + timedelta(seconds=(answered_s or 0) + talk_s)
    assert transition(call.pk, status, reason="completed" if status == "completed" else status, at=ended)
    call.refresh_from_db()
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


# --- the roll-up (calls.rollup): kept by the state machine, read by the dashboard ---------------

FINAL = {str(s) for s in FINAL_STATUSES}


def _median(values):
    """The median as the dashboard defines it on this database (reports._median)."""
    values = sorted(values)
    if not values:
        return None
    if connection.vendor != "postgresql":
        return values[(len(values) - 1) // 2]
    pos = 0.5 * (len(values) - 1)
    lo, hi = values[math.floor(pos)], values[math.ceil(pos)]
    return lo + (hi - lo) * (pos - math.floor(pos))


def reference(org, start, end, workflow_id=None) -> dict:
    """The dashboard's figures the slow, obvious way: every call and event, in Python."""
    zone = ZoneInfo(org.timezone)
    calls = [c for c in CallSession.objects.filter(organization=org)
             if start <= c.created_at.astimezone(zone).date() <= end and workflow_id in (None, c.workflow_id)]
    per_day = Counter((c.created_at.astimezone(zone).date(), c.status) for c in calls)
    outcomes: dict[int, Counter] = {}
    for c in calls:
        if c.outcome is not None:
            result = c.outcome.get("result") if isinstance(c.outcome, dict) else None
            outcomes.setdefault(c.workflow_id, Counter())[result or "(none)"] += 1
    turns = [float(e.data["turn_ms"]) for e in CallEvent.objects.filter(call__in=[c.pk for c in calls], kind="metrics")
             if isinstance(e.data.get("turn_ms"), (int, float)) and not isinstance(e.data["turn_ms"], bool)
             and abs(e.data["turn_ms"]) < rollup.TURN_MAX_MS]
    timed = [(c.ended_at - c.answered_at).total_seconds() for c in calls if c.answered_at and c.ended_at]
    dial_out_final = [c for c in calls if c.direction == "dial_out" and c.status in FINAL
                      and (c.dialout_attempts or c.answered_at or c.status in ("no_answer", "busy"))]
    return {
        "per_day": {k: n for k, n in per_day.items()},
        "total": len(calls),
        "dialled": len(dial_out_final),
        "answered": sum(1 for c in dial_out_final if c.answered_at and c.end_reason != "voicemail"),
        "outcomes": {wf: dict(counts) for wf, counts in outcomes.items()},
        "median_duration_s": _median(timed),
        "median_turn_ms": _median(turns),
        "turns_measured": len(turns),
    }


def shown(org, start, end, workflow_id=None) -> dict:
    """What the dashboard computes (calls.reports.figures), in the reference's shape
    (SQLite's median duration goes through julianday(): equal to a millisecond)."""
    workflows = {wf.pk: wf.name for wf in org.workflows.all()}
    fig = reports.figures(reports.Filters(org, workflow_id, start, end), workflows)
    names = {name: pk for pk, name in workflows.items()}
    return {
        "per_day": {(d["day"], status): n for d in fig.per_day for status, n in d["counts"].items()},
        "total": fig.total, "dialled": fig.dialled, "answered": fig.answered,
        "outcomes": {names[o["workflow"]]: dict(o["results"]) for o in fig.outcomes},
        "median_duration_s": (fig.median_duration_s if fig.median_duration_s is None or connection.vendor == "postgresql"
                              else pytest.approx(fig.median_duration_s, abs=1e-3)),
        "median_turn_ms": fig.median_turn_ms, "turns_measured": fig.turns_measured,
    }


def rollup_rows(org) -> dict:
    """The roll-ups' rows, without the emptied ones."""
    days = {(r.day, r.workflow_id, r.status, r.result): (r.calls, r.with_outcome, r.dialled, r.answered, r.timed)
            for r in CallDay.objects.filter(organization=org) if r.calls}
    turns = {(r.day, r.workflow_id, r.value): (r.band, r.n) for r in TurnCount.objects.filter(organization=org) if r.n}
    bands = {(r.day, r.workflow_id, r.band): r.n for r in TurnBand.objects.filter(organization=org) if r.n}
    return {"days": days, "turns": turns, "bands": bands}


def bot_says(call, seq, event, **data):
    return apply_bot_message(call.pk, {"seq": seq, "event": event, "at": timezone.now().isoformat(), "data": data})


def play(c, rng, created, wf, *, late_outcome_ok=True):
    """One call, the way the system moves it, to a random end (or still running)."""
    with time_machine.travel(created, tick=False):
        call = factories.make_call(c["org"], wf, c["patient"])
    path = rng.choice(["completed", "completed", "completed", "no_answer", "busy", "failed", "canceled", "queued",
                       "in_progress"])
    t = created
    result = rng.choice(["confirmed", "declined", "confirmed", None, ""])
    outcome_now = rng.random() < 0.5
    if path == "canceled":
        assert transition(call.pk, "canceled", reason="canceled", at=t + timedelta(seconds=3))
        return call
    if path == "queued":
        return call
    assert transition(call.pk, "starting", at=t + timedelta(seconds=1))
    if path == "failed":
        assert transition(call.pk, "failed", reason="start_failed", at=t + timedelta(seconds=4))
        return call
    if path in ("no_answer", "busy"):
        assert transition(call.pk, "ringing", at=t + timedelta(seconds=2))
        assert transition(call.pk, path, reason=path, at=t + timedelta(seconds=30))
        return call
    answered = t + timedelta(seconds=rng.randint(2, 9))
    assert transition(call.pk, "in_progress", at=answered)
    seq = 1
    for _ in range(rng.randint(0, 4)):
        value = rng.choice([rng.randint(200, 2500), rng.randint(200, 2500), round(rng.uniform(200, 2500), 1)])
        bot_says(call, seq, "metrics", turn_ms=value, stt_ms=150)
        seq += 1
    if rng.random() < 0.2:  # what is not a number is not a latency
        bot_says(call, seq, "metrics", turn_ms=rng.choice(["fast", True, None, "820", 10**30, [1]]))
        seq += 1
    if result is not None and outcome_now:
        bot_says(call, seq, "outcome", result=result)
        seq += 1
    if path == "in_progress":
        return call
    assert transition(call.pk, "completed", reason="completed", at=answered + timedelta(seconds=rng.randint(20, 400)))
    if result is not None and not outcome_now and late_outcome_ok:
        bot_says(call, seq, "outcome", result=result)  # after the end: the roll-up recounts it
        seq += 1
    if rng.random() < 0.15:  # the bot changes its mind after the end
        bot_says(call, seq, "outcome", result=rng.choice(["rescheduled", "confirmed"]))
    return call


def test_figures_from_the_rollup_are_those_of_the_calls(clinic):
    """A random month around the end of daylight saving time in Los Angeles (1 Nov
    2026): calls of two workflows ending every way, late outcomes, metrics with odd
    values. The dashboard's figures equal those computed from every call and event,
    for any workflow and period; a rebuild finds the same rows the updates kept."""
    rng = random.Random(7)
    inbound = factories.make_workflow(clinic["org"], slug="inbound", name="Inbound", direction="dial_in")
    first = datetime(2026, 10, 25, 0, 0, tzinfo=dt_timezone.utc)
    for _ in range(90):
        created = first + timedelta(minutes=rng.randint(0, 14 * 24 * 60))
        play(clinic, rng, created, rng.choice([clinic["wf"], clinic["other_wf"], inbound]))
    org = clinic["org"]
    periods = [(date(2026, 10, 20), date(2026, 11, 15)), (date(2026, 10, 31), date(2026, 11, 1)),
               (date(2026, 11, 1), date(2026, 11, 1)), (date(2026, 11, 3), date(2026, 11, 30))]
    for start, end in periods:
        for wf in (None, clinic["wf"].pk, inbound.pk):
            assert shown(org, start, end, wf) == reference(org, start, end, wf), (start, end, wf)
    kept = rollup_rows(org)
    assert sum(n for n, *_ in kept["days"].values()) == CallSession.objects.filter(status__in=FINAL).count()
    rollup.rebuild(org.pk)
    assert rollup_rows(org) == kept


@time_machine.travel(NOW, tick=False)
def test_a_call_counts_once_while_running_and_when_it_ends(clinic):
    org, today = clinic["org"], date(2026, 11, 30)
    with time_machine.travel(NOW - timedelta(minutes=5), tick=False):
        call = factories.make_call(org, clinic["wf"], clinic["patient"])
        cancelled = factories.make_call(org, clinic["wf"], clinic["patient"])
    figs = shown(org, today, today)
    assert figs["per_day"] == {(today, "queued"): 2} and figs["total"] == 2
    assert not CallDay.objects.exists()  # not final: counted from the calls
    assert transition(call.pk, "starting") and transition(call.pk, "in_progress")
    assert shown(org, today, today)["per_day"] == {(today, "queued"): 1, (today, "in_progress"): 1}
    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        assert transition(call.pk, "completed", reason="completed")
    assert transition(cancelled.pk, "canceled", reason="canceled")
    assert not transition(cancelled.pk, "failed")  # a final call does not move (nor count) again
    figs = shown(org, today, today)
    assert figs["per_day"] == {(today, "completed"): 1, (today, "canceled"): 1} and figs["total"] == 2
    # the canceled call never rang: not dialled
    assert figs["dialled"] == 1 and figs["answered"] == 1 and figs["median_duration_s"] == 120.0
    assert {(r.status, r.calls) for r in CallDay.objects.all()} == {("completed", 1), ("canceled", 1)}


def test_a_call_is_counted_on_the_day_it_was_placed_in_the_organisations_zone(clinic):
    org = clinic["org"]  # Los Angeles: UTC-8 in December
    # placed at 23:50 on 1 Dec in Los Angeles (07:50 UTC on the 2nd), ended after midnight there
    with time_machine.travel(datetime(2026, 12, 2, 7, 50, tzinfo=dt_timezone.utc), tick=False):
        late = factories.make_call(org, clinic["wf"], clinic["patient"])
        assert transition(late.pk, "starting") and transition(late.pk, "in_progress")
    with time_machine.travel(datetime(2026, 12, 2, 8, 20, tzinfo=dt_timezone.utc), tick=False):
        assert transition(late.pk, "completed", reason="completed")
        # placed at 00:20 on 2 Dec there
        early = factories.make_call(org, clinic["wf"], clinic["patient"])
        assert transition(early.pk, "canceled", reason="canceled")
    assert {(r.day, r.status) for r in CallDay.objects.all()} == {(date(2026, 12, 1), "completed"),
                                                                  (date(2026, 12, 2), "canceled")}
    assert shown(org, date(2026, 12, 1), date(2026, 12, 1))["per_day"] == {(date(2026, 12, 1), "completed"): 1}
    assert shown(org, date(2026, 12, 2), date(2026, 12, 2))["per_day"] == {(date(2026, 12, 2), "canceled"): 1}


def test_a_new_zone_moves_the_days(clinic):
    org = clinic["org"]
    with time_machine.travel(datetime(2026, 12, 2, 7, 50, tzinfo=dt_timezone.utc), tick=False):
        call = factories.make_call(org, clinic["wf"], clinic["patient"])
        assert transition(call.pk, "starting") and transition(call.pk, "in_progress")
        bot_says(call, 1, "metrics", turn_ms=900)
        assert transition(call.pk, "completed", reason="completed")
    assert CallDay.objects.get().day == TurnCount.objects.get().day == TurnBand.objects.get().day == date(2026, 12, 1)
    org.timezone = "Europe/Paris"
    org.save()
    assert CallDay.objects.get().day == TurnCount.objects.get().day == TurnBand.objects.get().day == date(2026, 12, 2)
    assert shown(org, date(2026, 12, 2), date(2026, 12, 2)) == reference(org, date(2026, 12, 2), date(2026, 12, 2))
    org.name = "Renamed"
    org.save()  # no new zone: nothing recounted
    assert CallDay.objects.get().day == date(2026, 12, 2)


@time_machine.travel(NOW, tick=False)
def test_a_retry_is_a_call_of_its_own(clinic):
    org, today = clinic["org"], date(2026, 11, 30)
    clinic["wf"].retry_on, clinic["wf"].retry_delays_min = ["no_answer"], [10]
    clinic["wf"].save()
    call = factories.make_call(org, clinic["wf"], clinic["patient"], max_attempts=2)
    assert transition(call.pk, "starting") and transition(call.pk, "ringing")
    assert transition(call.pk, "no_answer", reason="no_answer")
    retry = CallSession.objects.get(previous_attempt=call)
    assert shown(org, today, today)["per_day"] == {(today, "no_answer"): 1, (today, "scheduled"): 1}
    with time_machine.travel(NOW + timedelta(minutes=11), tick=False):
        assert transition(retry.pk, "queued") and transition(retry.pk, "starting")
        assert transition(retry.pk, "in_progress") and transition(retry.pk, "completed", reason="completed")
    figs = shown(org, today, today)
    assert figs["per_day"] == {(today, "no_answer"): 1, (today, "completed"): 1}
    assert figs["dialled"] == 2 and figs["answered"] == 1
    assert sum(r.calls for r in CallDay.objects.all()) == 2


@time_machine.travel(NOW, tick=False)
def test_a_late_outcome_moves_the_call_to_its_result(clinic):
    org, today = clinic["org"], date(2026, 11, 30)
    call = factories.make_call(org, clinic["wf"], clinic["patient"])
    assert transition(call.pk, "starting") and transition(call.pk, "in_progress")
    assert transition(call.pk, "completed", reason="completed")
    assert shown(org, today, today)["outcomes"] == {}
    bot_says(call, 1, "outcome", result="confirmed")
    assert shown(org, today, today)["outcomes"] == {clinic["wf"].pk: {"confirmed": 1}}
    bot_says(call, 2, "outcome", result="declined")
    assert shown(org, today, today)["outcomes"] == {clinic["wf"].pk: {"declined": 1}}
    bot_says(call, 3, "outcome", result=None)
    assert shown(org, today, today)["outcomes"] == {clinic["wf"].pk: {"(none)": 1}}
    assert shown(org, today, today)["total"] == 1
    assert {(r.result, r.calls, r.with_outcome) for r in CallDay.objects.filter(calls__gt=0)} == {("", 1, 1)}


@time_machine.travel(NOW, tick=False)
def test_turn_latency_median_is_exact_across_bands(clinic):
    org, today = clinic["org"], date(2026, 11, 30)
    call = factories.make_call(org, clinic["wf"], clinic["patient"])
    assert transition(call.pk, "starting") and transition(call.pk, "in_progress")
    bot_says(call, 1, "metrics", turn_ms=150)
    bot_says(call, 2, "metrics", turn_ms=250)  # the two middle values are in two bands
    expected = 200.0 if connection.vendor == "postgresql" else 150.0
    assert shown(org, today, today)["median_turn_ms"] == expected
    for seq, value in enumerate([-5, 0, 99.5, 100, 5000, 2**40, 10**400, "fast", "820", True, None], start=3):
        bot_says(call, seq, "metrics", turn_ms=value)  # stored, never a crash; only latencies count
    bot_says(call, 14, "metrics", stt_ms=180)  # no turn_ms at all
    figs = shown(org, today, today)
    assert figs == reference(org, today, today) and figs["turns_measured"] == 7
    assert CallEvent.objects.filter(call=call, kind="metrics").count() == 14
    kept = rollup_rows(org)
    rollup.rebuild(org.pk)  # the same test in SQL, over every stored event
    assert rollup_rows(org) == kept and shown(org, today, today) == figs


@time_machine.travel(NOW, tick=False)
def test_the_figures_take_five_queries_whatever_the_data(clinic, django_assert_num_queries):
    org = clinic["org"]
    workflows = {clinic["wf"].pk: "Reminder", clinic["other_wf"].pk: "Follow-up"}
    year = reports.Filters(org, None, date(2025, 12, 1), date(2026, 11, 30))
    with django_assert_num_queries(5):
        empty = reports.figures(year, workflows)
    assert empty.total == 0 and empty.median_turn_ms is None and empty.median_duration_s is None
    for i in range(30):
        add_call(clinic, created=NOW - timedelta(days=i * 11, hours=1), turn_ms=400 + 13 * i,
                 wf=clinic["wf"] if i % 2 else clinic["other_wf"], status=["completed", "busy"][i % 2])
    factories.make_call(org, clinic["wf"], clinic["patient"])  # still queued
    for filters in (year, reports.Filters(org, clinic["wf"].pk, date(2026, 11, 1), date(2026, 11, 30))):
        with django_assert_num_queries(5):
            fig = reports.figures(filters, workflows)
        assert fig.total and fig.turns_measured


def test_rebuild_command_checks_and_recounts(clinic):
    from io import StringIO

    from django.core.management import call_command

    add_call(clinic, created=NOW - timedelta(hours=3), turn_ms=700)
    CallDay.objects.all().delete()  # as after rows written around the state machine
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("rebuild_call_days", "--check", stdout=out)
    assert "DIFFERENT" in out.getvalue()
    call_command("rebuild_call_days", "--org", clinic["org"].slug, stdout=StringIO())
    out = StringIO()
    call_command("rebuild_call_days", "--check", stdout=out)
    assert "DIFFERENT" not in out.getvalue()
    assert rollup.totals(clinic["org"].pk) == {"calls": 1, "turns": 1, "banded": 1}


@time_machine.travel(NOW, tick=False)
def test_the_answer_rate_counts_dialled_calls_a_person_answered(client, clinic):
    """Canceled before ringing and failed starts were never dialled; voicemail is no person."""
    staff = factories.make_user(org=clinic["org"], role="staff")
    at = datetime(2026, 11, 30, 17, 0, tzinfo=dt_timezone.utc)
    for _ in range(3):
        add_call(clinic, created=at)  # answered by a person
    voicemail = add_call(clinic, created=at, status="no_answer", result=None)  # answered by a machine
    CallSession.objects.filter(pk=voicemail.pk).update(end_reason="voicemail")
    add_call(clinic, created=at, status="busy", answered_s=None, result=None)
    for _ in range(4):  # canceled while queued: never rang
        with time_machine.travel(at, tick=False):
            call = factories.make_call(clinic["org"], clinic["wf"], clinic["patient"])
        assert transition(call.pk, "canceled", reason="canceled", at=at + timedelta(seconds=3))
    with time_machine.travel(at, tick=False):
        call = factories.make_call(clinic["org"], clinic["wf"], clinic["patient"])
    assert transition(call.pk, "starting", at=at)
    assert transition(call.pk, "failed", reason="start_failed", at=at + timedelta(seconds=2))
    from calls import rollup
    rollup.rebuild(clinic["org"].pk)  # the voicemail's end reason was written around the state machine

    body = page(client, staff).content.decode()
    assert '<span class="dash-value" id="answer-rate">60%</span>' in body
    assert "3 of 5 dialled calls answered by a person" in body
