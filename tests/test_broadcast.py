"""Open live lists hear of a new call at once, before a worker picks it up."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from calls import services
from calls.broadcast import org_group
from tests import factories


@pytest.mark.django_db
def test_a_new_dialin_call_is_announced_queued_then_starting(org, fake_daily, fake_runner, django_capture_on_commit_callbacks):
    wf = factories.make_workflow(org, slug="triage", direction="dial_in")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(org_group(org.pk), channel)

    with django_capture_on_commit_callbacks(execute=True):
        call, created = services.accept_dialin(
            organization=org, workflow=wf, call_id="cid-1", call_domain="dom-1",
            from_number="+14155550177", to_number="+14155559999",
        )
    assert created
    first = async_to_sync(layer.receive)(channel)
    assert first["type"] == "call.update"
    assert first["call"]["session_id"] == str(call.pk) and first["call"]["status"] == "queued"
    statuses = []
    for _ in range(3):
        message = async_to_sync(layer.receive)(channel)
        if message["type"] == "call.update":
            statuses.append(message["call"]["status"])
            break
    assert statuses == ["starting"]
