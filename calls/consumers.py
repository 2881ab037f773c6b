"""WebSocket consumers: the bot's status socket and the browsers' live sockets."""

from __future__ import annotations

import json
import logging

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from audit.models import AuditAction
from audit.services import record as audit
from organizations import access

from .access_changes import user_group
from .broadcast import call_group, load_call, org_group, send_call_messages, serialize_call, serialize_event
from .events import BadMessage, apply_bot_message, record_invalid_message, token_matches
from .models import CallSession
from .selectors import call_events, unfinished_calls
from .shaping import shape_call_for, shape_event_for  # noqa: F401 - also used by tests and views
from .starting import delete_room

log = logging.getLogger(__name__)


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


def _bearer(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return ""


class _DispatchWithoutDbHop:
    """Channels closes stale DB connections before dispatching every message
    (``aclose_old_connections``): a hop to the one thread all sockets share for
    sync work, per message and per socket — with ten pages open, twenty hops
    per bot event, queued behind the bots' database writes (the event → browser
    latency in bench/RESULTS.md). These consumers reach the database only
    through ``database_sync_to_async``, which closes stale connections itself.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError("No handler for message type %s" % message["type"])
        await handler(message)


def _db(func):
    """``database_sync_to_async`` on a pool thread: one socket's writes do not
    queue behind another's (each socket still handles its messages in order)."""
    return database_sync_to_async(func, thread_sensitive=False)


class RefusedSocket(AsyncJsonWebsocketConsumer):
    """No such socket: closed before accept, so the client sees HTTP 403."""

    channel_layer_alias = None  # it hears nothing: no channel-layer receive to set up

    async def connect(self):
        log.info("socket refused: no route for %s", self.scope.get("path", "")[:200])
        await self.close()


class BotStatusConsumer(_DispatchWithoutDbHop, AsyncJsonWebsocketConsumer):
    """/ws/bot/<session_id>/ — one bot reporting one call, authenticated by its token."""

    async def connect(self):
        self.call_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        if not await database_sync_to_async(token_matches)(self.call_id, _bearer(self.scope)):
            log.warning("bot socket refused for call %s: wrong or expired token", self.call_id)
            await self.close()  # before accept: the client sees HTTP 403
            return
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Every frame is answered by nothing and never closes the socket: a
        message the server cannot store becomes an ``invalid_message`` event, so
        the messages after it (the outcome, ``ended``) still land."""
        if text_data is None:
            await self._invalid("a binary frame: messages are JSON text")
            return
        try:
            content = json.loads(text_data, parse_constant=_not_json)
        except (ValueError, RecursionError):
            await self._invalid("not valid JSON")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        try:
            applied = await _db(self._apply)(content)
        except BadMessage as exc:
            await self._invalid(str(exc), content)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the database refusing a value
            log.exception("bot message for call %s could not be stored", self.call_id)
            await self._invalid(f"the server could not store it ({exc.__class__.__name__})", content)
            return
        if applied is None:
            return  # a replayed seq: already stored and acted on
        call_payload, event_payload, became_final, room_name = applied
        await send_call_messages(call_payload, [event_payload])
        if became_final and room_name:
            self._delete_room_later(room_name)

    async def _invalid(self, reason: str, content=None) -> None:
        log.warning("bot message for call %s not stored: %s", self.call_id, reason)
        try:
            call_payload, event_payload = await _db(self._record_invalid)(reason, content)
        except Exception:  # noqa: BLE001 - the socket must stay open whatever happens
            log.exception("could not record an invalid message for call %s", self.call_id)
            return
        if call_payload is not None:
            await send_call_messages(call_payload, [event_payload])

    def _record_invalid(self, reason, content):
        event = record_invalid_message(self.call_id, reason, content)
        call = self._load_call()
        return (serialize_call(call) if call else None), serialize_event(event)

    def _apply(self, content):
        applied = apply_bot_message(self.call_id, content)
        if applied is None:
            return None
        for note in applied.notes:
            log.info("call %s: %s", self.call_id, note)
        call = self._load_call()
        return serialize_call(call), serialize_event(applied.event), applied.became_final, applied.room_name

    def _load_call(self):
        """The call with its organisation, workflow and patient. Those do not
        change during a call: after the first message only the call's own row is
        read (the joined read was the biggest query per bot event)."""
        related = getattr(self, "_related", None)
        if related is not None:
            call = CallSession.objects.filter(pk=self.call_id).first()
            organization, workflow, patient = related
            if (call is not None and call.organization_id == organization.pk and call.workflow_id == workflow.pk
                    and call.patient_id == (patient.pk if patient is not None else None)):
                call.organization, call.workflow, call.patient = organization, workflow, patient
                return call
        call = load_call(self.call_id)
        if call is not None:
            self._related = (call.organization, call.workflow, call.patient)
        return call

    def _delete_room_later(self, room_name: str) -> None:
        """The call is over: delete its room without holding up the socket."""
        delete_room(room_name, self.call_id, wait=False)


class _BrowserConsumer(_DispatchWithoutDbHop, AsyncJsonWebsocketConsumer):
    """Session-authenticated; `groups_to_join` decides what the user may hear."""

    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated or not self.user.is_staff:
            await self.close()
            return
        self.roles = await database_sync_to_async(access.roles_for)(self.user)
        groups = await self.groups_to_join()
        if groups is None:
            await self.close()
            return
        # Told when the user's memberships change (calls.access_changes).
        self.joined = [user_group(self.user.pk), *groups]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # What the page may have missed between its render and this socket (or
        # while a dropped socket reconnected): the current state, once. Updates
        # from the groups queue behind it, and pages ignore what they already have.
        for message in await database_sync_to_async(self.snapshot)():
            await self.send_json(message)

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def groups_to_join(self) -> list[str] | None:
        raise NotImplementedError

    async def access_changed(self, message):
        """A membership, role, user or organisation changed: re-read what this
        user may hear; close the socket when it is nothing any more, else
        reshape (messages from now on are shaped for the new roles)."""
        user = await database_sync_to_async(self._fresh_user)()
        roles = await database_sync_to_async(access.roles_for)(user) if user is not None else {}
        if user is None or not user.is_active or not user.is_staff or not roles:
            await self._lose_access()
            return
        self.user, self.roles = user, roles
        groups = await self.groups_to_join()
        if groups is None:
            await self._lose_access()
            return
        wanted = [user_group(user.pk), *groups]
        for group in set(self.joined) - set(wanted):
            await self.channel_layer.group_discard(group, self.channel_name)
        for group in set(wanted) - set(self.joined):
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = wanted

    async def _lose_access(self):
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []
        self.roles = {}
        await self.close(code=ACCESS_LOST_CLOSE_CODE)

    def _fresh_user(self):
        return get_user_model().objects.filter(pk=self.user.pk).first()

    def snapshot(self) -> list[dict]:
        """Messages sent right after accepting (sync, runs in a DB thread)."""
        return []

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        pass  # browsers only listen (and junk they send must not crash the socket)

    async def call_update(self, message):
        call = message["call"]
        if call["organization_id"] not in self.roles:
            return
        await self.send_json({"type": "call.update", "call": shape_call_for(self.user, call)})

    async def call_event(self, message):
        org_id = message.get("organization_id")
        if org_id is None:
            org_id = await self._org_of(message["session_id"])
        if org_id not in self.roles:
            return
        event = shape_event_for(self.user, org_id, message["event"])
        if event is not None:
            await self.send_json({"type": "call.event", "session_id": message["session_id"], "event": event})

    async def _org_of(self, session_id):
        cache = self.__dict__.setdefault("_org_cache", {})
        if session_id not in cache:
            call = await database_sync_to_async(load_call)(session_id)
            cache[session_id] = call.organization_id if call else None
        return cache[session_id]


#: Close code when a user lost access while the socket was open (4000-4999: the application's).
ACCESS_LOST_CLOSE_CODE = 4403


class CallListConsumer(_BrowserConsumer):
    """/ws/calls/ — every call of the user's organisations."""

    SNAPSHOT_LIMIT = 200

    async def groups_to_join(self):
        return [org_group(org_id) for org_id in self.roles]

    def snapshot(self):
        calls = unfinished_calls(self.roles)[: self.SNAPSHOT_LIMIT]
        return [{"type": "call.update", "call": shape_call_for(self.user, serialize_call(c))} for c in calls]


class CallDetailConsumer(_BrowserConsumer):
    """/ws/calls/<session_id>/ — one call, for members of its organisation only."""

    async def groups_to_join(self):
        session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        call = await database_sync_to_async(load_call)(session_id)
        if call is None or call.organization_id not in self.roles:
            return None
        self.session_id = session_id
        return [call_group(session_id)]

    def snapshot(self):
        call = load_call(self.session_id)
        if call is None:
            return []
        if access.sees_phi(self.user, call.organization_id):
            # The socket carries the transcript live to those who see it: audited like the page.
            audit(AuditAction.VIEW_TRANSCRIPT, call, user=self.user, via="socket")
        # Events first, then the call: the order live broadcasts use.
        messages = []
        for event in call_events(call):
            shaped = shape_event_for(self.user, call.organization_id, serialize_event(event))
            if shaped is not None:
                messages.append({"type": "call.event", "session_id": self.session_id, "event": shaped})
        messages.append({"type": "call.update", "call": shape_call_for(self.user, serialize_call(call))})
        return messages
