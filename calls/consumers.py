"""WebSocket consumers: the bot's status socket and the browsers' live sockets."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from organizations import access

from .broadcast import call_group, load_call, org_group, send_call_messages, serialize_call, serialize_event
from .events import BadMessage, apply_bot_message, token_matches
from .shaping import shape_call_for, shape_event_for  # noqa: F401 - also used by tests and views

log = logging.getLogger(__name__)


def _bearer(scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
    return ""


class BotStatusConsumer(AsyncJsonWebsocketConsumer):
    """/ws/bot/<session_id>/ — one bot reporting one call, authenticated by its token."""

    async def connect(self):
        self.call_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        if not await database_sync_to_async(token_matches)(self.call_id, _bearer(self.scope)):
            log.warning("bot socket refused for call %s: wrong or expired token", self.call_id)
            await self.close()  # before accept: the client sees HTTP 403
            return
        await self.accept()

    async def receive_json(self, content, **kwargs):
        try:
            applied = await database_sync_to_async(self._apply)(content)
        except BadMessage as exc:
            log.warning("bot message for call %s ignored: %s", self.call_id, exc)
            return
        if applied is None:
            return  # a replayed seq: already stored and acted on
        call_payload, event_payload, became_final, room_name = applied
        await send_call_messages(call_payload, [event_payload])
        if became_final and room_name:
            self._delete_room_later(room_name)

    def _apply(self, content):
        applied = apply_bot_message(self.call_id, content)
        if applied is None:
            return None
        for note in applied.notes:
            log.info("call %s: %s", self.call_id, note)
        call = load_call(self.call_id)
        return serialize_call(call), serialize_event(applied.event), applied.became_final, applied.room_name

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    def _delete_room_later(self, room_name: str) -> None:
        """The call is over: delete its room without holding up the socket."""
        from botrunner import daily, http

        async def delete():
            session = await http.get_session()
            return await daily.delete_room(session, room_name)

        def done(fut):
            if fut.exception() is not None:
                log.warning("could not delete room %s: %s", room_name, fut.exception())

        try:
            http.submit(delete).add_done_callback(done)
        except Exception:  # noqa: BLE001
            log.exception("could not schedule deletion of room %s", room_name)


class _BrowserConsumer(AsyncJsonWebsocketConsumer):
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
        self.joined = groups
        for group in groups:
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


class CallListConsumer(_BrowserConsumer):
    """/ws/calls/ — every call of the user's organisations."""

    SNAPSHOT_LIMIT = 200

    async def groups_to_join(self):
        return [org_group(org_id) for org_id in self.roles]

    def snapshot(self):
        from .selectors import unfinished_calls

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
        from .selectors import call_events

        call = load_call(self.session_id)
        if call is None:
            return []
        # Events first, then the call: the order live broadcasts use.
        messages = []
        for event in call_events(call):
            shaped = shape_event_for(self.user, call.organization_id, serialize_event(event))
            if shaped is not None:
                messages.append({"type": "call.event", "session_id": self.session_id, "event": shaped})
        messages.append({"type": "call.update", "call": shape_call_for(self.user, serialize_call(call))})
        return messages
