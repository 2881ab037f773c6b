"""Tools the bot calls on the server during a call (the bot → server tool channel).

Some answers must not be in the bot's hands before it needs them — the
patient's details before the person is verified, the record a date of birth is
compared with — so the bot asks the server:

    POST {PUBLIC_BASE_URL}/api/bot/<session id>/tools/<name>
    Authorization: Bearer <status token>          (as the status socket: valid until the call is final)
    {"date_of_birth": "1980-03-04"}               (a JSON object: the tool's arguments)
    → 200 {"verified": true, "patient_data": {…}} (a JSON object: the tool's result)

Errors answer in the API's envelope (``{"detail", "errors": [{"field", "message"}]}``):
401 wrong or expired token, 404 unknown tool, 422 bad arguments (each field
named), 409 refused by the tool.

A tool is a function ``handler(call, args) -> dict`` registered by name::

    from calls.bot_tools import ToolError, register

    class ConfirmArgs(pydantic.BaseModel):
        slot: str

    @register("confirm_appointment", args=ConfirmArgs)
    def confirm_appointment(call, args: ConfirmArgs) -> dict:
        ...
        return {"confirmed": True}

``call`` is the ``CallSession`` (organisation, workflow and patient loaded,
row-locked for the tool's transaction); ``args`` the validated model (or the
raw dict without ``args=``). Raise ``ToolError`` to refuse. Any app may put its
tools in a ``bot_tools.py`` module: ``calls`` imports them all at start-up
(``autodiscover``), as the admin finds ``admin.py`` modules.

Every tool call is audited (``AuditEvent`` ``bot_tool`` on the call, via
``bot``) and leaves a ``tool`` event on the call's timeline with the tool's
name and whether it succeeded — never its arguments or result, which may be
personal data.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit.models import AuditAction
from audit.services import record as audit
from botrunner.agent_request import patient_data_after_verification, patient_data_for

from .broadcast import broadcast_call_sync
from .models import CallEvent, CallSession

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class ToolError(Exception):
    """A tool refusing: answered in the API envelope with ``status``."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None, code: str = "refused"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.code = code


@dataclass(frozen=True)
class Tool:
    name: str
    handler: Callable[[CallSession, Any], dict]
    args: type[BaseModel] | None = None


TOOLS: dict[str, Tool] = {}


def register(name: str, *, args: type[BaseModel] | None = None):
    """Decorator: make ``handler(call, args) -> dict`` the tool ``name``."""
    if not _NAME_RE.match(name):
        raise ValueError(f"a tool name is lower-case letters, digits and _: {name!r}")

    def decorate(handler):
        if name in TOOLS and TOOLS[name].handler is not handler:
            raise ValueError(f"the bot tool {name!r} is registered twice")
        TOOLS[name] = Tool(name=name, handler=handler, args=args)
        return handler

    return decorate


def autodiscover() -> None:
    """Import every installed app's ``bot_tools`` module, so its tools register."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("bot_tools")


def _validated(tool: Tool, args: dict):
    if tool.args is None:
        return args
    try:
        return tool.args.model_validate(args)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in exc.errors()
        ]
        raise ToolError(422, "Invalid arguments: check " + ", ".join(e["field"] for e in errors) + ".", errors,
                        code="invalid")


def _trace(call_id, organization_id, name: str, ok: bool, code: str = "") -> CallEvent:
    data = {"name": name, "ok": ok}
    if code:
        data["error"] = code
    event = CallEvent.objects.create(call_id=call_id, at=timezone.now(), kind="tool", data=data)
    audit(AuditAction.BOT_TOOL, object_type="calls.callsession", object_id=call_id,
          organization_id=organization_id, via="bot")
    return event


def call_tool(call_id, name: str, args: dict) -> dict:
    """Run the tool ``name`` for the call (whose token the caller has checked); its result.

    The tool runs in one transaction with the call's row locked, so two calls
    of a tool on one call (a retried request) run one after the other.
    Raises ``ToolError``.
    """
    tool = TOOLS.get(name)
    if tool is None:
        raise ToolError(404, f"No tool called {name!r}.", code="unknown_tool")
    if not isinstance(args, dict):
        raise ToolError(422, "The arguments must be a JSON object.", [{"field": "body", "message": "Expected an object."}],
                        code="invalid")
    parsed = _validated(tool, args)
    org_id = CallSession.objects.filter(pk=call_id).values_list("organization_id", flat=True).first()
    try:
        with transaction.atomic():
            call = (
                CallSession.objects.select_for_update(of=("self",))
                .select_related("organization", "workflow", "patient")
                .get(pk=call_id)
            )
            result = tool.handler(call, parsed)
            if not isinstance(result, dict):
                raise TypeError(f"the bot tool {name!r} returned {type(result).__name__}, not a dict")
            event = _trace(call_id, org_id, name, True)
            transaction.on_commit(lambda: broadcast_call_sync(call_id, [event], background=True))
    except ToolError as exc:
        with transaction.atomic():
            event = _trace(call_id, org_id, name, False, exc.code)
        broadcast_call_sync(call_id, [event], background=True)
        raise
    log.info("call %s: bot tool %s answered", call_id, name)
    return result


# --- verify_identity ----------------------------------------------------------------------

#: Wrong answers after which the bot must end the call (``ended {reason: unverified}``).
MAX_IDENTITY_FAILURES = 2

_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m-%d-%Y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y", "%Y%m%d")


def parse_spoken_date(text: str) -> dt.date | None:
    """A date of birth as the LLM passes it on (ISO 8601 asked; a few spelled-out forms accepted)."""
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", (text or "").strip(), flags=re.IGNORECASE)
    cleaned = re.sub(r"[,.]", " ", cleaned)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
    return None


def _postal(text: str) -> str:
    """Letters and digits only, upper case; a US ZIP+4 compared on its first five digits."""
    value = re.sub(r"[^0-9A-Za-z]", "", text or "").upper()
    return value[:5] if value.isdigit() and len(value) == 9 else value


class VerifyIdentityArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date_of_birth: str = Field(..., min_length=1, max_length=40, description="As the person said it, YYYY-MM-DD.")
    postal_code: str = Field("", max_length=16, description="As the person said it (dob_and_zip workflows).")


def _matches(call: CallSession, args: VerifyIdentityArgs, mode: str) -> bool:
    patient = call.patient
    if patient is None or patient.date_of_birth is None:
        return False
    if parse_spoken_date(args.date_of_birth) != patient.date_of_birth:
        return False
    if mode == "dob_and_zip":
        stored = _postal(patient.postal_code)
        return bool(stored) and _postal(args.postal_code) == stored
    return True


def _verified_answer(call: CallSession) -> dict:
    config = dict(call.workflow.config or {})
    return {"verified": True, "patient_data": patient_data_after_verification(call.patient, config)}


@register("verify_identity", args=VerifyIdentityArgs)
def verify_identity(call: CallSession, args: VerifyIdentityArgs) -> dict:
    """Compare what the person said with the record, on the server: the bot never holds the date of birth.

    Success: ``{"verified": true, "patient_data": {…}}`` — the rest of what the
    workflow gives the bot — and an ``identity_verified`` event. A wrong answer:
    ``{"verified": false, "attempts_left": n, "end_call": n == 0}``; after
    ``MAX_IDENTITY_FAILURES`` the bot ends the call ``unverified`` and further
    tries are answered the same (no guessing).
    """
    mode = call.workflow.verification or "none"
    if mode == "none":
        config = dict(call.workflow.config or {})
        return {"verified": True, "patient_data": patient_data_for(call.patient, config)}
    if call.identity_verified_at is not None:
        return _verified_answer(call)
    if call.identity_failures >= MAX_IDENTITY_FAILURES:
        return {"verified": False, "attempts_left": 0, "end_call": True}
    if mode == "dob_and_zip" and not args.postal_code.strip():
        raise ToolError(422, "postal_code is required: ask for the ZIP code too.",
                        [{"field": "postal_code", "message": "Required for this workflow."}], code="invalid")
    if parse_spoken_date(args.date_of_birth) is None:
        raise ToolError(422, "date_of_birth is not a date: pass it as YYYY-MM-DD.",
                        [{"field": "date_of_birth", "message": "Not a date (YYYY-MM-DD)."}], code="invalid")
    now = timezone.now()
    if _matches(call, args, mode):
        CallSession.objects.filter(pk=call.pk).update(identity_verified_at=now)
        call.identity_verified_at = now
        event = CallEvent.objects.create(call_id=call.pk, at=now, kind="identity_verified", data={"method": mode})
        transaction.on_commit(lambda: broadcast_call_sync(call.pk, [event], background=True))
        return _verified_answer(call)
    failures = call.identity_failures + 1
    CallSession.objects.filter(pk=call.pk).update(identity_failures=failures)
    call.identity_failures = failures
    left = max(0, MAX_IDENTITY_FAILURES - failures)
    event = CallEvent.objects.create(
        call_id=call.pk, at=now, kind="identity_failed", data={"method": mode, "failures": failures}
    )
    transaction.on_commit(lambda: broadcast_call_sync(call.pk, [event], background=True))
    return {"verified": False, "attempts_left": left, "end_call": left == 0}
