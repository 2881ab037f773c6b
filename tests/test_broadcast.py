"""Open live lists hear of a new call at once, before a worker picks it up."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from calls import services
from calls.broadcast import org_group
from tests import factories


@pytest.mark.django_db(transaction=True)
async def test_a_new_dialin_call_is_announced_queued_then_starting(fake_daily, fake_runner):
    org, wf = await database_sync_to_async(
        lambda: (lambda o: (o, factories.make_workflow(o, slug="triage", direction="dial_in")))(factories.make_org())
    )()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(org_group(org.pk), channel)

    call, created = await database_sync_to_async(services.accept_dialin)(
        organization=org, workflow=wf, call_id="cid-1", call_domain="dom-1",
        from_number="+14155550177", to_number="+14155559999",
    )
    assert created
    updates = []
    while len(updates) < 2:
        message = await asyncio.wait_for(layer.receive(channel), 5)
        if message["type"] == "call.update":
            assert message["call"]["session_id"] == str(call.pk)
            updates.append(message["call"]["status"])
    assert updates == ["queued", "starting"]
    await layer.group_discard(org_group(org.pk), channel)
