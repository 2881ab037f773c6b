"""The live call pages (/calls/live/, /calls/<id>/) and their browser sockets.

Pages through Django's test client: login and is_staff required, scoped to the
user's organisations (another organisation's call is a 404), viewers see the
patient masked and no transcript, hang up / cancel for staff and admins only,
and a query count that does not grow with the rows. Sockets through
WebsocketCommunicator: session auth, Origin check, per-role shaping.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from calls.broadcast import load_call, send_call_messages, serialize_call, serialize_event
from calls.models import CallEvent, CallSession, CallStatus
from tests import factories

NAME = "Ada Lovelace"
PHONE = "+14155550123"
SAID = "Yes, Tuesday at ten thirty works for me"


@pytest.fixture
def world(db):
    a = factories.make_org("clinic-a", name="Clinic A")
    b = factories.make_org("clinic-b", name="Clinic B")
    wa = factories.make_workflow(a, slug="reminder", name="Reminder")
    wa_in = factories.make_workflow(a, slug="inbound", name="Inbound line", direction="dial_in")
    wb = factories.make_workflow(b, slug="reminder", name="B reminder")
    pa = factories.make_patient(a, phone=PHONE, first_name="Ada", last_name="Lovelace")
    pb = factories.make_patient(b, phone="+14155550999", first_name="Bruno", last_name="Other")
    now = timezone.now()
    ca = factories.make_call(
        a, wa, pa, status=CallStatus.IN_PROGRESS, started_at=now - timedelta(seconds=70),
        answered_at=now - timedelta(seconds=65), daily_room_name="call-room-a",
        transcript=[{"role": "assistant", "text": "Hello Ada", "seq": 5}, {"role": "user", "text": SAID, "seq": 6}],
        outcome={"result": "confirmed", "notes": "Ada Lovelace confirmed", "data": {"slot": "Tue 10:30"}},
    )
    CallEvent.objects.create(call=ca, at=now - timedelta(seconds=70), kind="status", data={"from": "queued", "to": "starting"})
    CallEvent.objects.create(call=ca, at=now - timedelta(seconds=68), kind="dialout_attempt", seq=3,
                             data={"attempt": 1, "max_attempts": 5})
    CallEvent.objects.create(call=ca, at=now - timedelta(seconds=67), kind="dialout_error", seq=4,
                             data={"attempt": 1, "error": f"could not reach {PHONE}"})
    CallEvent.objects.create(call=ca, at=now - timedelta(seconds=66), kind="transcript", seq=6,
                             data={"role": "user", "text": SAID})
    cb = factories.make_call(b, wb, pb, status=CallStatus.RINGING)
    done = factories.make_call(a, wa, pa, status=CallStatus.COMPLETED, ended_at=now, end_reason="completed")
    dialin = factories.make_call(a, wa_in, None, status=CallStatus.WAITING, from_number="+14155557777")
    users = {
        "staff": factories.make_user("staff-a", org=a, role="staff"),
        "admin": factories.make_user("admin-a", org=a, role="admin"),
        "viewer": factories.make_user("viewer-a", org=a, role="viewer"),
        "other": factories.make_user("staff-b", org=b, role="staff"),
    }
    return dict(a=a, b=b, wa=wa, wa_in=wa_in, wb=wb, pa=pa, pb=pb, ca=ca, cb=cb, done=done, dialin=dialin, **users)


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(client, url, status=200) -> str:
    resp = client.get(url)
    assert resp.status_code == status, (url, resp.status_code)
    return resp.content.decode()


# --- login and scoping ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["/calls/live/", "detail"])
def test_login_required(client, world, url):
    url = f"/calls/{world['ca'].pk}/" if url == "detail" else url
    resp = client.get(url)
    assert resp.status_code == 302 and resp["Location"].startswith(settings.LOGIN_URL)
    # a logged-in user without is_staff is sent to the (admin) login too
    user = factories.make_user("not-staff", org=world["a"], role="staff")
    user.is_staff = False
    user.save()
    resp = as_user(user).get(url)
    assert resp.status_code == 302 and resp["Location"].startswith(settings.LOGIN_URL)


def test_root_redirects_to_live_list(client):
    resp = client.get("/")
    assert resp.status_code == 302 and resp["Location"] == "/calls/live/"


def test_list_shows_own_organisation_only(world):
    body = page(as_user(world["staff"]), "/calls/live/")
    for call in (world["ca"], world["done"], world["dialin"]):
        assert str(call.pk) in body
    assert str(world["cb"].pk) not in body
    assert "Bruno" not in body and "B reminder" not in body
    assert NAME in body
    assert "Unknown caller" in body  # the dial-in from an unmatched number
    # unfinished calls and finished ones are in their own tables
    unfinished, finished = body.split('data-section="finished"')
    assert str(world["ca"].pk) in unfinished and str(world["done"].pk) in finished


def test_other_organisations_call_is_404(world):
    client = as_user(world["other"])
    page(client, f"/calls/{world['ca'].pk}/", status=404)
    assert client.post(f"/calls/{world['ca'].pk}/cancel/").status_code == 404
    page(client, f"/calls/{world['cb'].pk}/")  # their own is fine
    page(client, "/calls/00000000-0000-0000-0000-000000000000/", status=404)


def test_superuser_sees_every_organisation(world):
    root = factories.make_user("root", is_superuser=True)
    body = page(as_user(root), "/calls/live/")
    assert str(world["ca"].pk) in body and str(world["cb"].pk) in body
    assert "Organisation" in body  # a column once several organisations are shown
    page(as_user(root), f"/calls/{world['cb'].pk}/")


# --- what each role sees ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "admin"])
def test_staff_see_the_whole_call(world, role):
    body = page(as_user(world[role]), f"/calls/{world['ca'].pk}/")
    assert NAME in body and PHONE in body
    assert SAID in body and "Hello Ada" in body  # the transcript
    assert "confirmed" in body and "Ada Lovelace confirmed" in body and "Tue 10:30" in body
    assert "Reminder" in body and "Dial-out" in body and "In progress" in body
    assert "Dialing" in body and "attempt 1 of 5" in body  # dial-out attempts
    assert f"could not reach {PHONE}" in body
    assert 'id="cancel-form"' in body and "Hang up" in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert f'data-ws-path="/ws/calls/{world["ca"].pk}/"' in body


def test_viewer_sees_the_call_masked_without_transcript(world):
    client = as_user(world["viewer"])
    body = page(client, f"/calls/{world['ca'].pk}/")
    assert "Lovelace" not in body and PHONE not in body
    assert world["pa"].masked_name in body
    assert SAID not in body and "Hello Ada" not in body
    assert "Transcripts are hidden for your role" in body
    assert "confirmed" in body  # the result, not the notes or data
    assert "Ada Lovelace confirmed" not in body and "Tue 10:30" not in body
    assert "could not reach" in body and "0123" not in body.split("could not reach", 1)[1][:40]
    assert 'id="cancel-form"' not in body
    # the live list too
    body = page(client, "/calls/live/")
    assert "Lovelace" not in body and PHONE not in body and world["pa"].masked_name in body
    assert "+14155557777" not in body


def test_viewer_cannot_cancel(world, fake_daily):
    resp = as_user(world["viewer"]).post(f"/calls/{world['ca'].pk}/cancel/")
    assert resp.status_code == 403
    world["ca"].refresh_from_db()
    assert world["ca"].status == CallStatus.IN_PROGRESS
    assert fake_daily.requests_to("DELETE /rooms/*") == []


# --- hang up / cancel ---------------------------------------------------------------------


def test_staff_hang_up_cancels_and_deletes_the_room(world, fake_daily, django_capture_on_commit_callbacks):
    client = as_user(world["staff"])
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(f"/calls/{world['ca'].pk}/cancel/")
    assert resp.status_code == 302 and resp["Location"] == f"/calls/{world['ca'].pk}/"
    world["ca"].refresh_from_db()
    assert world["ca"].status == CallStatus.CANCELED and world["ca"].end_reason == "canceled"
    assert [r["path"] for r in fake_daily.requests_to("DELETE /rooms/*")] == ["/rooms/call-room-a"]
    body = page(client, resp["Location"])
    assert "Hung up the call" in body
    assert "Canceled" in body
    assert 'id="cancel-form" class="call-cancel" method="post"' in body and " hidden>" in body.split('id="cancel-form"')[1][:200]
    event = CallEvent.objects.get(call=world["ca"], kind="status", data__to="canceled")
    assert event.data["by_user"] == world["staff"].pk


def test_cancel_of_a_finished_call_says_why(world, fake_daily):
    client = as_user(world["admin"])
    resp = client.post(f"/calls/{world['done'].pk}/cancel/", follow=True)
    assert resp.status_code == 200
    assert "The call was not ended: The call has already ended (completed)." in resp.content.decode()
    assert fake_daily.requests_to("DELETE /rooms/*") == []


def test_cancel_needs_post_and_csrf(world):
    assert as_user(world["staff"]).get(f"/calls/{world['ca'].pk}/cancel/").status_code == 405
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["staff"])
    assert client.post(f"/calls/{world['ca'].pk}/cancel/").status_code == 403
    world["ca"].refresh_from_db()
    assert world["ca"].status == CallStatus.IN_PROGRESS


# --- filters ----------------------------------------------------------------------------------


def test_filters_by_workflow_direction_and_ids(world):
    client = as_user(world["staff"])
    body = page(client, f"/calls/live/?workflow={world['wa_in'].pk}")
    assert str(world["dialin"].pk) in body and str(world["ca"].pk) not in body
    assert f'data-filter-workflow="{world["wa_in"].pk}"' in body
    body = page(client, "/calls/live/?direction=dial_out")
    assert str(world["ca"].pk) in body and str(world["dialin"].pk) not in body
    body = page(client, f"/calls/live/?ids={world['ca'].pk},not-a-uuid,{world['cb'].pk}")
    assert str(world["ca"].pk) in body and str(world["done"].pk) not in body and str(world["dialin"].pk) not in body
    assert str(world["cb"].pk) not in body.split('id="calls-unfinished"')[1]  # not theirs, even by id
    assert "Showing the 2 calls you just placed" in body
    # another organisation's workflow id is ignored, not an error
    body = page(client, f"/calls/live/?workflow={world['wb'].pk}&direction=sideways")
    assert str(world["ca"].pk) in body


def test_list_keeps_every_unfinished_call_and_the_recent_finished(world):
    for _ in range(30):
        factories.make_call(world["a"], world["wa"], world["pa"], status=CallStatus.FAILED, ended_at=timezone.now())
    old_active = factories.make_call(world["a"], world["wa"], world["pa"], status=CallStatus.RINGING)
    CallSession.objects.filter(pk=old_active.pk).update(created_at=timezone.now() - timedelta(days=3))
    body = page(as_user(world["staff"]), "/calls/live/")
    assert str(old_active.pk) in body
    finished = body.split('data-section="finished"')[1].split('id="row-template"')[0]
    assert finished.count('class="live-row"') == 25


# --- queries do not grow with rows ---------------------------------------------------------


def _count(client, url) -> int:
    client.get(url)  # warm caches (sessions, content types)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_query_count_is_constant(world):
    client = as_user(world["staff"])
    before = _count(client, "/calls/live/")
    other = factories.make_workflow(world["a"], slug="other")
    for i in range(15):
        patient = factories.make_patient(world["a"])
        factories.make_call(world["a"], other if i % 2 else world["wa"], patient, status=CallStatus.RINGING)
        factories.make_call(world["a"], world["wa"], patient, status=CallStatus.COMPLETED)
        factories.make_call(world["a"], world["wa_in"], None, status=CallStatus.WAITING)
    assert _count(client, "/calls/live/") == before
    viewer = as_user(world["viewer"])
    assert _count(viewer, "/calls/live/") == before


def test_detail_query_count_is_constant(world):
    client = as_user(world["staff"])
    url = f"/calls/{world['ca'].pk}/"
    before = _count(client, url)
    for seq in range(100, 140):
        CallEvent.objects.create(call=world["ca"], at=timezone.now(), kind="dialout_error", seq=seq, data={"error": "x"})
    CallSession.objects.filter(pk=world["ca"].pk).update(
        transcript=[{"role": "user", "text": f"line {i}", "seq": 200 + i} for i in range(50)]
    )
    assert _count(client, url) == before


# --- the CallSession admin links to the live page --------------------------------------------


def test_admin_links_to_the_live_page(world):
    client = as_user(world["viewer"])
    body = page(client, "/admin/calls/callsession/")
    assert f'href="/calls/{world["ca"].pk}/"' in body and "Watch live" in body
    assert 'href="/calls/live/"' in body
    body = page(client, f"/admin/calls/callsession/{world['ca'].pk}/change/")
    assert f'href="/calls/{world["ca"].pk}/"' in body
    assert "Lovelace" not in body and SAID not in body


# --- browser sockets -----------------------------------------------------------------------------


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def _socket(user, path, origin=b"http://127.0.0.1"):
    from myrobot.asgi import application

    headers = [(b"host", b"127.0.0.1")]
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", await sync_to_async(_session_cookie)(user)))
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


async def _drain(comm, timeout=1.0) -> list[dict]:
    out = []
    # receive_nothing peeks without cancelling the application (a timed-out receive would)
    while not await comm.receive_nothing(timeout=timeout):
        out.append(await comm.receive_json_from(timeout=5))
    return out


async def _broadcast(call_id, *events):
    def payloads():
        call = load_call(call_id)
        return serialize_call(call), [serialize_event(e) for e in events]

    call_payload, event_payloads = await sync_to_async(payloads)()
    await send_call_messages(call_payload, event_payloads)


@pytest.mark.django_db(transaction=True)
async def test_sockets_refuse_strangers_other_orgs_and_foreign_origins(world):
    ca = world["ca"]
    for user, path, origin in [
        (None, f"/ws/calls/{ca.pk}/", b"http://127.0.0.1"),          # not logged in
        (world["other"], f"/ws/calls/{ca.pk}/", b"http://127.0.0.1"),  # another organisation
        (world["staff"], f"/ws/calls/{ca.pk}/", b"http://evil.example"),  # foreign Origin
        (world["staff"], "/ws/calls/", None),                            # no Origin at all
        (None, "/ws/calls/", b"http://127.0.0.1"),
    ]:
        comm, connected = await _socket(user, path, origin)
        assert not connected, (user, path, origin)
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_detail_socket_snapshot_then_updates_shaped_per_role(world):
    ca = world["ca"]
    staff, ok1 = await _socket(world["staff"], f"/ws/calls/{ca.pk}/")
    viewer, ok2 = await _socket(world["viewer"], f"/ws/calls/{ca.pk}/")
    assert ok1 and ok2
    staff_snapshot, viewer_snapshot = await _drain(staff), await _drain(viewer)
    assert staff_snapshot[-1]["type"] == "call.update" and staff_snapshot[-1]["call"]["patient"]["name"] == NAME
    assert any(m["type"] == "call.event" and m["event"]["event"] == "transcript" for m in staff_snapshot)
    assert viewer_snapshot[-1]["call"]["patient"]["name"] == world["pa"].masked_name
    assert not any(m["type"] == "call.event" and m["event"]["event"] == "transcript" for m in viewer_snapshot)

    transcript = await CallEvent.objects.acreate(call=ca, at=timezone.now(), kind="transcript", seq=50,
                                                 data={"role": "user", "text": SAID})
    answered = await CallEvent.objects.acreate(call=ca, at=timezone.now(), kind="dialin_connected", seq=51,
                                               data={"sipFrom": PHONE, "note": f"from {PHONE}"})
    await _broadcast(ca.pk, transcript, answered)
    got_staff, got_viewer = await _drain(staff), await _drain(viewer)
    assert [m["type"] for m in got_staff] == ["call.event", "call.event", "call.update"]
    assert [m["type"] for m in got_viewer] == ["call.event", "call.update"]
    viewer_text = str(got_viewer) + str(viewer_snapshot)
    for secret in ("Lovelace", PHONE, SAID, "Hello Ada", "Tue 10:30", "Ada Lovelace confirmed"):
        assert secret not in viewer_text, secret
    assert got_viewer[1]["call"]["outcome"] == {"result": "confirmed"}
    assert got_staff[2]["call"]["patient"]["phone"] == PHONE
    # a call of another organisation never reaches these sockets
    await _broadcast(world["cb"].pk)
    assert await _drain(staff) == []
    await staff.disconnect()
    await viewer.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_list_socket_hears_its_organisations_calls_only(world):
    comm, connected = await _socket(world["viewer"], "/ws/calls/")
    assert connected
    snapshot = await _drain(comm)
    ids = {m["call"]["session_id"] for m in snapshot}
    assert ids == {str(world["ca"].pk), str(world["dialin"].pk)}  # unfinished, own organisation
    assert "+14155557777" not in str(snapshot) and "Lovelace" not in str(snapshot)
    new = await sync_to_async(factories.make_call)(world["a"], world["wa_in"], None, status=CallStatus.STARTING)
    await _broadcast(new.pk)
    await _broadcast(world["cb"].pk)
    got = await _drain(comm)
    assert [m["call"]["session_id"] for m in got] == [str(new.pk)]
    await comm.send_to(text_data="not json")  # browsers only listen; junk is ignored
    assert await _drain(comm) == []
    await comm.disconnect()


def test_call_page_shows_per_turn_latency_and_its_median_and_no_digits_to_viewers(world):
    from django.utils import timezone as tz

    call, now = world["ca"], tz.now()
    for seq, (turn, llm) in enumerate([(900, 300), (700, 250), (1500, 800)], start=20):
        CallEvent.objects.create(call=call, at=now, kind="metrics", seq=seq,
                                 data={"turn_ms": turn, "llm_ttfb_ms": llm, "tts_ttfb_ms": 120})
    CallEvent.objects.create(call=call, at=now, kind="dtmf", seq=30, data={"digits": "7319"})
    body = page(as_user(world["staff"]), f"/calls/{call.pk}/")
    assert "median <span data-field=\"median-turn\">900 ms</span>" in body
    assert "1500 ms" in body and "LLM 800 ms" in body
    assert "7319" in body  # staff see what was keyed
    viewer = page(as_user(world["viewer"]), f"/calls/{call.pk}/")
    assert "900 ms" in viewer and "7319" not in viewer
