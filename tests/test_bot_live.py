"""The bot's StatusReporter against the real BotStatusConsumer, served by daphne on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from channels.db import database_sync_to_async as sync_to_async  # closes its DB connections

from botkit.reporter import StatusReporter
from calls.models import CallEvent, CallSession
from calls.state import transition
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "live-status-token"
FAST = (0.02, 0.05, 0.1)


@sync_to_async
def make_started_call():
    org = factories.make_org()
    wf = factories.make_workflow(org, slug="wf", direction="dial_out")
    patient = factories.make_patient(org, first_name="Ada", last_name="Lovelace")
    call = factories.make_call(org, wf, patient, direction="dial_out")
    CallSession.objects.filter(pk=call.pk).update(
        status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest()
    )
    transition(call.pk, "starting")
    return CallSession.objects.get(pk=call.pk)


@sync_to_async
def stored(call):
    return list(CallEvent.objects.filter(call=call, seq__isnull=False).order_by("seq").values_list("seq", "kind"))


async def has_events(call, n):
    return len(await stored(call)) >= n


@sync_to_async
def reload(call):
    return CallSession.objects.get(pk=call.pk)


async def wait_for(check, timeout=10.0):
    """Poll ``check()`` (plain or async) until it is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_reporter_reaches_the_consumer_survives_a_drop_and_ends_the_call(asgi_live_server):
    call = await make_started_call()
    url = f"{asgi_live_server.ws_url}/ws/bot/{call.pk}/"
    reporter = StatusReporter(url, TOKEN, backoff=FAST)
    reporter.start()
    reporter.send("bot_started")
    reporter.send("joined")
    reporter.send("dialout_attempt", {"attempt": 1, "max_attempts": 5})
    await wait_for(lambda: has_events(call, 3))
    assert (await reload(call)).status == "ringing"

    # The socket goes away under the reporter: it reconnects with the same token
    # and resends 1..3, which the server already has and ignores.
    await reporter._ws.close()
    reporter.send("dialout_answered", {"attempt": 1, "sessionId": "s"})
    reporter.send("transcript", {"role": "assistant", "text": "Hello"})
    await wait_for(lambda: has_events(call, 5))
    assert reporter.connects == 2

    reporter.send("ended", {"reason": "completed"})
    assert await reporter.close(timeout=10)
    # close() returns once the frames are written; the server may still be storing the last.
    await wait_for(lambda: has_events(call, 6))

    assert await stored(call) == [
        (1, "bot_started"),
        (2, "joined"),
        (3, "dialout_attempt"),
        (4, "dialout_answered"),
        (5, "transcript"),
        (6, "ended"),
    ]
    call = await reload(call)
    assert call.status == "completed"
    assert call.transcript[0]["text"] == "Hello"


async def test_wrong_token_is_refused_and_the_reporter_gives_up(asgi_live_server):
    call = await make_started_call()
    reporter = StatusReporter(
        f"{asgi_live_server.ws_url}/ws/bot/{call.pk}/", "wrong-token", backoff=FAST, max_refusals=2
    )
    reporter.start()
    reporter.send("bot_started")
    await wait_for(lambda: reporter.refused)
    assert await reporter.close(timeout=1) is False
    assert await stored(call) == []

