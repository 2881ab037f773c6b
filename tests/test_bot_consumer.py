"""The server side of the bot status protocol, through a real WebSocket consumer."""

import asyncio
import hashlib
from datetime import datetime, timezone as dt_tz

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from calls.broadcast import call_group, org_group
from calls.models import CallEvent, CallSession
from calls.state import transition
from myrobot.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "status-token-for-tests"


def msg(seq, event, **data):
    return {"seq": seq, "event": event, "at": datetime.now(dt_tz.utc).isoformat(), "data": data}


@database_sync_to_async
def make_started_call(direction="dial_out", status="starting"):
    org = factories.make_org()
    wf = factories.make_workflow(org, slug="wf", direction=direction)
    patient = factories.make_patient(org, first_name="Ada", last_name="Lovelace")
    call = factories.make_call(org, wf, patient, direction=direction)
    CallSession.objects.filter(pk=call.pk).update(
        status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(), daily_room_name=f"room-{call.pk.hex[:8]}"
    )
    if status != "queued":
        transition(call.pk, "starting")
    return CallSession.objects.get(pk=call.pk)


@database_sync_to_async
def reload(call):
    return CallSession.objects.get(pk=call.pk)


@database_sync_to_async
def events_of(call, **filters):
    return list(CallEvent.objects.filter(call=call, **filters).order_by("id"))


async def connect(call, token=TOKEN):
    headers = [(b"authorization", f"Bearer {token}".encode())] if token is not None else []
    comm = WebsocketCommunicator(application, f"/ws/bot/{call.pk}/", headers=headers)
    connected, code = await comm.connect()
    return comm, connected, code


async def send_all(comm, call, messages):
    """Send ``messages`` and return once the last one is stored and applied.

    The consumer answers the bot nothing; it stores each message and applies it
    in one transaction, in order, so the last message's row is the sentinel (the
    last message must carry a new seq). Waiting for it proves the earlier ones
    were handled, rather than guessing from a quiet moment."""
    for m in messages:
        await comm.send_json_to(m)
    last = messages[-1]["seq"]
    stored = database_sync_to_async(lambda: CallEvent.objects.filter(call=call, seq=last).exists())
    for _ in range(500):
        if await stored():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"message seq={last} was not stored within 10 s")


async def test_wrong_or_missing_token_is_refused_before_accept():
    call = await make_started_call()
    for token in ("nope", None, ""):
        comm, connected, code = await connect(call, token)
        assert not connected
        assert code == 403 or code is None or code == 1000
    assert await events_of(call, seq__isnull=False) == []


async def test_token_of_another_call_is_refused():
    call = await make_started_call()  # its token is TOKEN
    other = await make_started_call()
    await database_sync_to_async(CallSession.objects.filter(pk=other.pk).update)(
        status_token_hash=hashlib.sha256(b"the-other-calls-token").hexdigest()
    )
    _, connected, _ = await connect(other, TOKEN)
    assert not connected
    _, connected, _ = await connect(call, TOKEN)
    assert connected


async def test_a_final_call_refuses_its_token():
    call = await make_started_call()
    await database_sync_to_async(transition)(call.pk, "canceled")
    _, connected, _ = await connect(call)
    assert not connected


async def test_dialout_happy_path_and_replayed_seq_is_ignored():
    call = await make_started_call()
    comm, connected, _ = await connect(call)
    assert connected
    await send_all(
        comm,
        call,
        [
            msg(1, "bot_started"),
            msg(2, "joined"),
            msg(3, "dialout_attempt", attempt=1, max_attempts=5),
            msg(4, "dialout_answered", sessionId="x"),
            msg(5, "transcript", role="assistant", text="Hello Ada"),
            msg(6, "transcript", role="user", text="Hi, yes I will come"),
            msg(7, "outcome", result="confirmed", notes="will attend", data={"x": 1}),
            # a reconnect resends what the server already has
            msg(5, "transcript", role="assistant", text="Hello Ada"),
            msg(7, "outcome", result="declined", notes="replayed", data={}),
            msg(8, "ended", reason="completed"),
        ],
    )
    await comm.disconnect()
    call = await reload(call)
    assert call.status == "completed" and call.end_reason == "completed"
    assert call.bot_started_at and call.answered_at and call.ended_at
    assert call.dialout_attempts == 1
    assert [(t["role"], t["text"]) for t in call.transcript] == [
        ("assistant", "Hello Ada"),
        ("user", "Hi, yes I will come"),
    ]
    assert call.outcome == {"result": "confirmed", "notes": "will attend", "data": {"x": 1}}
    seqs = [e.seq for e in await events_of(call, seq__isnull=False)]
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 8]
    moves = [(e.data["from"], e.data["to"]) for e in await events_of(call, kind="status")]
    assert moves == [("queued", "starting"), ("starting", "ringing"), ("ringing", "in_progress"), ("in_progress", "completed")]


@pytest.mark.parametrize(
    "events,expected_status,expected_reason",
    [
        ([msg(1, "bot_started")], "starting", ""),
        ([msg(1, "joined")], "starting", ""),
        ([msg(1, "dialin_ready", sip_endpoint="sip:x@y")], "waiting", ""),
        ([msg(1, "dialin_ready", sip_endpoint="s"), msg(2, "dialin_connected")], "in_progress", ""),
        ([msg(1, "dialout_connected")], "in_progress", ""),
        ([msg(1, "dialout_attempt", attempt=2, max_attempts=5)], "ringing", ""),
        ([msg(1, "dialout_attempt", attempt=1), msg(2, "dialout_error", attempt=1, error="busy")], "ringing", ""),
        ([msg(1, "dialout_warning"), msg(2, "dialin_warning"), msg(3, "dialout_stopped"), msg(4, "dialin_stopped")], "starting", ""),
        ([msg(1, "dialin_error", error="x")], "starting", ""),
        ([msg(1, "participant_left", reason="hangup")], "starting", ""),
        ([msg(1, "dialout_answered"), msg(2, "ended", reason="completed")], "completed", "completed"),
        ([msg(1, "ended", reason="no_answer")], "no_answer", "no_answer"),
        ([msg(1, "ended", reason="busy")], "busy", "busy"),
        ([msg(1, "ended", reason="voicemail")], "no_answer", "voicemail"),
        ([msg(1, "ended", reason="dialout_failed")], "failed", "dialout_failed"),
        ([msg(1, "dialout_answered"), msg(2, "ended", reason="max_duration")], "completed", "max_duration"),
        ([msg(1, "ended", reason="canceled")], "canceled", "canceled"),
        # bot call control
        ([msg(1, "dialout_answered"), msg(2, "voicemail_detected"), msg(3, "ended", reason="voicemail",
                                                                         message_left=True)],
         "no_answer", "voicemail"),
        ([msg(1, "dialout_attempt", attempt=1), msg(2, "ended", reason="declined")], "no_answer", "declined"),
        ([msg(1, "dialout_attempt", attempt=1), msg(2, "ended", reason="busy")], "busy", "busy"),
        ([msg(1, "dialin_connected"), msg(2, "transfer_started"), msg(3, "ended", reason="transferred")],
         "completed", "transferred"),
        ([msg(1, "dialin_connected"), msg(2, "dtmf", digits="1"), msg(3, "metrics", turn_ms=900, llm_ttfb_ms=300),
          msg(4, "ended", reason="silence")], "completed", "silence"),
        ([msg(1, "dialin_connected"), msg(2, "ended", reason="remote_ended")], "canceled", "remote_ended"),
        ([msg(1, "dialin_connected"), msg(2, "ended", reason="service_error", error="TTS: bad voice")],
         "failed", "service_error"),
        ([msg(1, "dialin_connected"), msg(2, "transfer_started"),
          msg(3, "ended", reason="transfer_failed", error="Unable to transfer SIP call: 486 Busy Here")],
         "failed", "transfer_failed"),
        ([msg(1, "error", message="boom", fatal=False)], "starting", ""),
        ([msg(1, "error", message="could not join room", fatal=True)], "failed", "bot_error"),
        # illegal: completed straight from ringing is stored, not applied
        ([msg(1, "dialout_attempt", attempt=1), msg(2, "ended", reason="completed")], "ringing", ""),
    ],
)
async def test_protocol_table(events, expected_status, expected_reason):
    call = await make_started_call()
    comm, connected, _ = await connect(call)
    assert connected
    await send_all(comm, call, events)
    await comm.disconnect()
    call = await reload(call)
    assert call.status == expected_status
    assert call.end_reason == expected_reason
    stored = await events_of(call, seq__isnull=False)
    assert [e.kind for e in stored] == [m["event"] for m in events]
    if expected_reason == "bot_error":
        assert "could not join room" in call.error
    if expected_reason == "transfer_failed":
        assert "call-back" in call.error and "486 Busy Here" in call.error


async def test_broadcast_reaches_the_call_and_org_groups():
    call = await make_started_call()
    layer = get_channel_layer()
    call_channel = await layer.new_channel()
    org_channel = await layer.new_channel()
    await layer.group_add(call_group(call.pk), call_channel)
    await layer.group_add(org_group(call.organization_id), org_channel)
    comm, _, _ = await connect(call)
    await comm.send_json_to(msg(1, "dialout_attempt", attempt=1, max_attempts=3))
    for channel in (call_channel, org_channel):
        first = await layer.receive(channel)
        second = await layer.receive(channel)
        assert first["type"] == "call.event"
        assert first["event"]["event"] == "dialout_attempt" and first["event"]["seq"] == 1
        assert second["type"] == "call.update"
        assert second["call"]["status"] == "ringing"
        assert second["call"]["session_id"] == str(call.pk)
    await comm.disconnect()


async def test_final_call_deletes_its_daily_room(fake_daily):
    call = await make_started_call()
    fake_daily.rooms[call.daily_room_name] = {"name": call.daily_room_name}
    comm, _, _ = await connect(call)
    await send_all(comm, call, [msg(1, "dialout_answered"), msg(2, "ended", reason="completed")])
    await comm.disconnect()
    for _ in range(50):
        if any(r["method"] == "DELETE" for r in fake_daily.requests):
            break
        await asyncio.sleep(0.05)
    deletes = [r for r in fake_daily.requests if r["method"] == "DELETE"]
    assert [d["path"] for d in deletes] == [f"/rooms/{call.daily_room_name}"]
