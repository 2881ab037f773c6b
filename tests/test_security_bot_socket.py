"""One bad bot message never loses the rest of the call (issue 10, item 3).

A message the server cannot store is recorded as an ``invalid_message`` event
with the reason; the socket stays open and the next messages (the outcome,
``ended``) land. Text is stored without NUL characters (PostgreSQL refuses them).
"""

import asyncio
import json
from datetime import datetime, timezone as dt_tz

import pytest
from channels.db import database_sync_to_async
from tests.test_bot_consumer import connect, events_of, make_started_call, msg, reload

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime.now(dt_tz.utc).isoformat()

BAD_FRAMES = [
    ("binary", {"bytes_data": b"\x00\x01binary"}, "binary frame"),
    ("not json", {"text_data": "{not json"}, "not valid JSON"),
    ("NaN", {"text_data": '{"seq": 1, "event": "metrics", "data": {"x": NaN}}'}, "not valid JSON"),
    ("seq 2^31", {"text_data": json.dumps({"seq": 2**31, "event": "joined", "at": AT, "data": {}})}, "seq must be"),
    ("seq 0", {"text_data": json.dumps({"seq": 0, "event": "joined", "at": AT, "data": {}})}, "seq must be"),
    ("impossible date", {"text_data": json.dumps({"seq": 1, "event": "joined", "at": "2024-02-30T10:00:00Z"})},
     "not a possible date"),
    ("date out of range", {"text_data": json.dumps({"seq": 1, "event": "joined", "at": "9999-12-31T23:59:59-14:00"})},
     "not a possible date"),
    ("not an object", {"text_data": "[1, 2]"}, "JSON object"),
]


async def _until_stored(call, kind, count=1):
    """The sentinel: ``count`` events of ``kind`` stored (bounded, so a lost message fails the test).

    Polled in the database rather than heard on the channel layer: a test's own
    receive on the process's shared Redis layer would hold its per-process lock."""

    async def wait():
        while len(await events_of(call, kind=kind)) < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout=10)


async def _until_ended(call):
    await _until_stored(call, "ended")


@pytest.mark.parametrize("name,frame,reason", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_a_bad_message_is_recorded_and_the_call_still_ends(name, frame, reason):
    call = await make_started_call()
    comm, connected, _ = await connect(call)
    assert connected
    await comm.send_to(**frame)
    await comm.send_json_to(msg(1, "dialout_answered"))
    await comm.send_json_to(msg(2, "outcome", result="confirmed", notes="ok", data={}))
    await comm.send_json_to(msg(3, "ended", reason="completed"))
    await _until_ended(call)

    call = await reload(call)
    assert call.status == "completed"
    assert call.outcome["result"] == "confirmed"
    invalid = await events_of(call, kind="invalid_message")
    assert len(invalid) == 1 and reason in invalid[0].data["reason"], [e.data for e in invalid]
    # Still open, nothing sent back, no close frame. The socket handles frames in
    # order: once a marker frame is handled (stored as a second invalid_message),
    # whatever the frames before it made the server send is already queued.
    await comm.send_to(text_data="drain marker: not JSON")
    await _until_stored(call, "invalid_message", count=2)
    assert await comm.receive_nothing(timeout=0)  # no waiting: the marker proved it
    await comm.disconnect()


async def test_nul_characters_are_stripped_and_stored():
    call = await make_started_call()
    comm, connected, _ = await connect(call)
    assert connected
    await comm.send_json_to(msg(1, "dialout_answered"))
    await comm.send_json_to(msg(2, "transcript", role="user", text="yes\x00 please"))
    await comm.send_json_to(msg(3, "outcome", result="confirmed", notes="no\x00te", data={"k\x00": "v\x00"}))
    await comm.send_json_to(msg(4, "ended", reason="completed"))
    await _until_ended(call)

    call = await reload(call)
    assert call.status == "completed"
    assert [line["text"] for line in call.transcript] == ["yes please"]
    assert call.outcome == {"result": "confirmed", "notes": "note", "data": {"k": "v"}}
    assert await events_of(call, kind="invalid_message") == []
    await comm.disconnect()


async def test_replayed_bad_message_after_reconnect_does_not_block_the_rest():
    """The bot resends everything since its last connect: the bad one first."""
    call = await make_started_call()
    bad = json.dumps({"seq": 2, "event": "transcript", "at": "2024-02-30T10:00:00Z", "data": {"text": "x"}})
    first, connected, _ = await connect(call)
    await first.send_json_to(msg(1, "dialout_answered"))
    await first.send_to(text_data=bad)
    await first.disconnect()
    second, connected, _ = await connect(call)
    assert connected
    await second.send_json_to(msg(1, "dialout_answered"))
    await second.send_to(text_data=bad)
    await second.send_json_to(msg(3, "ended", reason="completed"))
    await _until_ended(call)
    assert (await reload(call)).status == "completed"
    await second.disconnect()
    stored = await database_sync_to_async(lambda: [e.data for e in call.events.filter(kind="invalid_message")])()
    assert stored and all("not a possible date" in d["reason"] for d in stored)
