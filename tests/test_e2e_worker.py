"""The whole dial-in path with the production parts: daphne, a real Celery worker on
Redis, the fakes over HTTP, and a bot reporting over the status socket."""

import json
import time
import urllib.request
import uuid
from datetime import datetime, timezone

import aiohttp

from calls.models import CallSession
from tests import factories
from tests.api_fixtures import new_secret, signed_headers


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def test_signed_webhook_to_bot_report_with_a_real_worker(fake_daily, fake_runner, celery_worker, asgi_live_server):
    secret = new_secret()
    org = factories.make_org("worker-clinic", dialin_webhook_secret=secret)
    factories.make_workflow(org, slug="triage", direction="dial_in")
    raw = json.dumps(
        {"From": "+14155550123", "To": "+14155559999", "callId": str(uuid.uuid4()), "callDomain": str(uuid.uuid4())}
    ).encode()
    headers = {k[5:].replace("_", "-").title() if k.startswith("HTTP_") else k: v for k, v in signed_headers(secret, raw).items()}
    headers["Content-Type"] = "application/json"
    req = urllib.request.Request(
        f"{asgi_live_server.url}/api/dialin-webhook/worker-clinic/triage", data=raw, headers=headers, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        session_id = json.loads(resp.read())["session_id"]

    # the worker (not the web process) made the room and started the bot
    body = wait_for(lambda: fake_runner.started and fake_runner.started[0], 20)
    assert body, "no bot start reached the runner:\n" + "".join(celery_worker.output[-40:])
    assert body["session_id"] == session_id and body["dialin_settings"]["call_id"]
    assert len(fake_daily.rooms) == 1

    async def report():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(body["status_url"], headers={"Authorization": f"Bearer {body['status_token']}"}) as ws:
                for seq, (event, data) in enumerate(
                    [("bot_started", {}), ("dialin_ready", {"sip_endpoint": "sip:x"}), ("dialin_connected", {}),
                     ("ended", {"reason": "completed"})],
                    start=1,
                ):
                    await ws.send_json({"seq": seq, "event": event, "at": datetime.now(timezone.utc).isoformat(), "data": data})

    import asyncio

    asyncio.run(report())
    call = wait_for(lambda: (c := CallSession.objects.get(pk=session_id)).status == "completed" and c, 10)
    assert call and call.status == "completed"
    assert wait_for(lambda: not fake_daily.rooms, 10), "the room of a finished call is deleted"
