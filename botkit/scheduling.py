"""The bot's scheduling tools: confirm, cancel, find free slots, book one.

The bot never talks to the EHR. Each tool is one POST to the server's tool
channel (``AgentRequest.tools_url`` + the tool's name, with the status token),
and the server acts on the appointment the call is about. A server that does
not answer in time, or answers an error, becomes ``{"ok": false, "reason":
"callback"}``: the bot tells the patient the clinic will call back. A request
is sent again once after a dropped connection; the server answers a repeat with
its first answer, so nothing is booked twice.

No Django here: this runs in the bot image.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

TIMEOUT_S = 8.0  # the server's own EHR timeout is 4 s: it answers "callback" before this
CALLBACK = {
    "ok": False, "reason": "callback",
    "say": "I could not reach the schedule just now. Someone from the clinic will call you back.",
}

NAMES = ("confirm_appointment", "cancel_appointment", "find_slots", "book_slot")

#: (name, description, JSON-schema properties, required) of each tool, for the LLM
SCHEMAS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("confirm_appointment", "Confirm the appointment in the clinic's schedule when the patient says they will come.",
     {}, []),
    ("cancel_appointment", "Cancel the appointment in the clinic's schedule when the patient asks to cancel it.",
     {"reason": {"type": "string", "description": "The patient's reason in a few words, if they gave one."}}, []),
    ("find_slots", "Find free times to move the appointment to. Offer the patient the times it returns, by their "
     "'text'. Dates are YYYY-MM-DD.",
     {"after": {"type": "string", "description": "Earliest day the patient can come (YYYY-MM-DD)."},
      "before": {"type": "string", "description": "Latest day the patient can come (YYYY-MM-DD)."}}, []),
    ("book_slot", "Move the appointment to a time the patient chose. Only a slot_id that find_slots returned (or a "
     "next_slot) can be booked. If the answer says slot_taken, offer its next_slot.",
     {"slot_id": {"type": "string", "description": "The slot_id of the chosen time."}}, ["slot_id"]),
]

INSTRUCTIONS = (
    "You can change this appointment in the clinic's schedule with the tools confirm_appointment, "
    "cancel_appointment, find_slots and book_slot. Only say that something changed after the tool said ok. "
    "When a tool answers with 'say', tell the patient that."
)


class ServerTools:
    """POSTs tool calls to the server for one call."""

    def __init__(self, tools_url: str, status_token: str, *, timeout_s: float = TIMEOUT_S,
                 session: aiohttp.ClientSession | None = None):
        self.tools_url = tools_url if tools_url.endswith("/") else tools_url + "/"
        self.token = status_token
        self.timeout_s = timeout_s
        self._session = session

    async def call(self, name: str, arguments: dict | None = None) -> dict:
        """The server's answer (a dict), or CALLBACK when it cannot be had in time."""
        args = {k: v for k, v in dict(arguments or {}).items() if v not in (None, "")}
        session = self._session or aiohttp.ClientSession()
        try:
            for attempt in range(2):
                try:
                    async with session.post(
                        self.tools_url + name, json=args, headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                    ) as response:
                        body = await response.json(content_type=None)
                        if response.status == 200 and isinstance(body, dict):
                            return body
                        if response.status in (409, 422) and isinstance(body, dict):
                            return {"ok": False, "reason": "refused", "detail": body.get("detail", "")}
                        return dict(CALLBACK)
                except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError):
                    if attempt == 0:
                        continue  # idempotent on the server: sending again books nothing twice
                    return dict(CALLBACK)
                except (asyncio.TimeoutError, aiohttp.ClientError, ValueError):
                    return dict(CALLBACK)
            return dict(CALLBACK)
        finally:
            if self._session is None:
                await session.close()


# --- wiring into the bot's LLM (bot.py) ------------------------------------------------


def enabled(req) -> bool:
    """The workflow asks for scheduling (``config.scheduling``) and the server has a tool channel."""
    return bool(req.tools_url) and bool((req.workflow.config or {}).get("scheduling"))


def function_schemas(req) -> list:
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema  # the bot image only

    if not enabled(req):
        return []
    return [FunctionSchema(name=n, description=d, properties=p, required=r) for n, d, p, r in SCHEMAS]


def prompt_addition(req) -> str:
    return ("\n\n" + INSTRUCTIONS) if enabled(req) else ""


def tools(req, client: ServerTools | None = None) -> list[tuple]:
    """The four tools as (schema, handler) pairs; each handler answers the LLM with the server's answer."""
    if not enabled(req):
        return []
    client = client or ServerTools(req.tools_url, req.status_token)

    def handler(name):
        async def run(params) -> None:
            await params.result_callback(await client.call(name, dict(params.arguments or {})))

        return run

    return [(schema, handler(schema.name)) for schema in function_schemas(req)]


def register(llm, req, client: ServerTools | None = None) -> None:
    """Register the four tools on ``llm`` (for pipelines built without ``bot.call_tools``)."""
    for schema, handler in tools(req, client):
        llm.register_function(schema.name, handler)
