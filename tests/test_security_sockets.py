"""Open browser sockets follow access changes within moments (issue 10, items 5 and 8).

After a membership is removed, a user deactivated or a role lowered, that user's
open /ws/calls/ sockets are closed or reshaped: no new call in clear reaches them.
The Origin check compares scheme, host and port.
"""

import asyncio
import itertools
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from calls.broadcast import load_call, send_call_messages, serialize_call
from calls.consumers import ACCESS_LOST_CLOSE_CODE
from calls.models import CallStatus
from organizations.models import OrganizationMembership
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(db):
    a = factories.make_org("clinic-a", name="Clinic A")
    wf = factories.make_workflow(a, slug="reminder")
    patient = factories.make_patient(a, first_name="Ada", last_name="Lovelace", phone="+14155550123")
    user = factories.make_user("staff-a", org=a, role="staff")
    return dict(a=a, wf=wf, patient=patient, user=user)


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def _socket(user, path="/ws/calls/", origin=b"http://127.0.0.1", host=b"127.0.0.1"):
    from myrobot.asgi import application

    headers = [(b"host", host), (b"origin", origin), (b"cookie", await sync_to_async(_cookie)(user))]
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


_markers = itertools.count(1)


async def _drain(comm, via_call_id) -> list[dict]:
    """The socket's output before a marker sent now through the groups of call
    ``via_call_id``: groups deliver in order, so what arrives before the marker
    is all there was. A close frame ends it too (no marker follows a close)."""
    marker = f"drain-marker-{next(_markers)}"
    payload = await sync_to_async(lambda: serialize_call(load_call(via_call_id)))()
    # The marker rides in a field every role receives (viewers get an allow-list).
    await send_call_messages({**payload, "end_reason": marker}, [])
    out = []
    while True:
        output = await comm.receive_output(timeout=10)
        if output["type"] == "websocket.send":
            got = str(json.loads(output["text"]).get("call", {}).get("end_reason") or "")
            if got == marker:
                return out
            if got.startswith("drain-marker-"):  # an earlier drain's marker is not news either
                continue
        out.append(output)
        if output["type"] == "websocket.close":
            return out


async def _new_call(world):
    call = await sync_to_async(factories.make_call)(world["a"], world["wf"], world["patient"],
                                                     status=CallStatus.STARTING)
    payload = await sync_to_async(lambda: serialize_call(load_call(call.pk)))()
    await send_call_messages(payload, [])
    return call


async def _closed_with(comm) -> int:
    """The sentinel: the close frame (bounded wait)."""
    while True:
        out = await comm.receive_output(timeout=5)
        if out["type"] == "websocket.close":
            return out.get("code")


def _remove_membership(user):
    OrganizationMembership.objects.filter(user=user).delete()


def _deactivate(user):
    user.is_active = False
    user.save()


def _deactivate_org(org):
    org.is_active = False
    org.save()


@pytest.mark.parametrize("change", ["membership_removed", "user_deactivated", "organisation_switched_off"])
async def test_socket_is_closed_when_access_is_removed(world, change):
    comm, connected = await _socket(world["user"])
    assert connected  # no call yet: no snapshot to read
    if change == "membership_removed":
        await sync_to_async(_remove_membership)(world["user"])
    elif change == "user_deactivated":
        await sync_to_async(_deactivate)(world["user"])
    else:
        await sync_to_async(_deactivate_org)(world["a"])
    assert await asyncio.wait_for(_closed_with(comm), timeout=5) == ACCESS_LOST_CLOSE_CODE
    await comm.disconnect()


async def test_detail_socket_is_closed_when_membership_is_removed(world):
    call = await sync_to_async(factories.make_call)(world["a"], world["wf"], world["patient"])
    comm, connected = await _socket(world["user"], f"/ws/calls/{call.pk}/")
    assert connected
    await _drain(comm, call.pk)  # the snapshot
    await sync_to_async(_remove_membership)(world["user"])
    assert await asyncio.wait_for(_closed_with(comm), timeout=5) == ACCESS_LOST_CLOSE_CODE
    await comm.disconnect()


async def test_lowered_role_reshapes_the_open_socket(world):
    comm, connected = await _socket(world["user"])
    assert connected  # no call yet: no snapshot to read
    call = await _new_call(world)
    before = await _drain(comm, call.pk)
    assert "Lovelace" in str(before)  # staff: names in clear
    await sync_to_async(OrganizationMembership.objects.filter(user=world["user"]).update)(role="viewer")
    # .update() sends no signal: save() as the admin does
    membership = await sync_to_async(OrganizationMembership.objects.get)(user=world["user"])
    await sync_to_async(membership.save)()
    # the sentinel that the socket has re-read the roles: its user group message is consumed
    # before the next broadcast (the channel layer keeps order per channel)
    call = await _new_call(world)
    after = await _drain(comm, call.pk)
    assert after, "the socket should still be open and hear new calls"
    assert all(m["type"] == "websocket.send" for m in after)
    assert "Lovelace" not in str(after) and "+14155550123" not in str(after)
    calls = [json.loads(m["text"])["call"] for m in after]
    assert calls[-1]["patient"]["name"] == world["patient"].masked_name and calls[-1]["sees_phi"] is False
    await comm.disconnect()


@pytest.mark.parametrize("origin,host,ok", [
    (b"http://127.0.0.1", b"127.0.0.1", True),
    (b"http://127.0.0.1:8000", b"127.0.0.1:8000", True),
    (b"http://127.0.0.1:9999", b"127.0.0.1:8000", False),   # another port on an allowed host
    (b"https://127.0.0.1:8000", b"127.0.0.1:8000", False),  # another scheme
    (b"http://localhost:8000", b"127.0.0.1:8000", False),   # another host, though allowed
    (b"http://evil.example", b"evil.example", False),        # a host that is not allowed
])
async def test_origin_must_match_scheme_host_and_port(world, origin, host, ok):
    comm, connected = await _socket(world["user"], origin=origin, host=host)
    assert connected is ok, (origin, host)
    await comm.disconnect()
