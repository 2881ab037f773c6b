"""The bot's side of the scheduling tools: the LLM is offered them when the
workflow asks, and each one is a POST to the server's tool channel (a live
server here, on the fake EHR), a slow server becoming "staff will call back"."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib

import pytest
from aiohttp import web

from botkit import scheduling
from botrunner.agent_request import AgentRequest
from fhir.models import FhirAppointment
from tests import factories
from tests.fakes.base import FakeServer
from tests.fhir_fixtures import make_connection

TOKEN = "bot-scheduling-token-0123456789abcdef"


def request(tools_url, config):
    return AgentRequest(
        room_url="https://example.daily.co/r", token="t", session_id="s", organization_id="1",
        organization_slug="o", status_url="ws://x", status_token=TOKEN, tools_url=tools_url,
        workflow={"slug": "w", "name": "W", "config": config}, dialout_settings={"phone_number": "+14155550123"},
    )


def test_the_llm_gets_the_four_tools_only_when_the_workflow_asks():
    import bot

    names = lambda req: [t.schema.name for t in bot.call_tools(bot.Call(req, reporter=None, transport=None))]  # noqa: E731
    assert set(scheduling.NAMES) <= set(names(request("http://s/api/bot/s/tools/", {"scheduling": True})))
    assert not set(scheduling.NAMES) & set(names(request("http://s/api/bot/s/tools/", {})))
    assert not set(scheduling.NAMES) & set(names(request(None, {"scheduling": True})))


@pytest.mark.django_db(transaction=True)
def test_the_bot_confirms_through_the_live_server(org, fake_fhir, fhir_keys, asgi_live_server):
    fake_fhir.add_patient("p1")
    fake_fhir.add_appointment("a1", "p1", "2030-05-05T15:00:00Z")
    connection = make_connection(org, fake_fhir, fhir_keys, allow_writes=True)
    patient = factories.make_patient(org)
    call = factories.make_call(org, connection.workflow, patient, status="in_progress",
                               status_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest())
    FhirAppointment.objects.create(organization=org, connection=connection, fhir_id="a1", patient=patient,
                                   patient_fhir_id="p1", start=dt.datetime(2030, 5, 5, 15, tzinfo=dt.timezone.utc),
                                   call=call)
    tools = scheduling.ServerTools(f"{asgi_live_server.url}/api/bot/{call.pk}/tools", TOKEN)

    answer = asyncio.run(tools.call("confirm_appointment"))

    assert answer["ok"] is True and answer["appointment"]["status"] == "confirmed"
    assert fake_fhir.appointments["a1"]["participant"][0]["status"] == "accepted"


class SlowServer(FakeServer):
    def setup_routes(self, app):
        async def slow(request):
            await asyncio.sleep(2)
            return web.json_response({"ok": True})

        app.router.add_post("/api/bot/s/tools/{name}", slow)


def test_a_server_that_does_not_answer_in_time_means_a_call_back():
    with SlowServer() as server:
        tools = scheduling.ServerTools(f"{server.url}/api/bot/s/tools/", TOKEN, timeout_s=0.2)
        answer = asyncio.run(tools.call("book_slot", {"slot_id": "s1"}))
    assert answer["reason"] == "callback" and "call you back" in answer["say"]
