"""The scheduling tools the bot calls on the server (the tool channel of
``calls.bot_tools``); the work is in ``fhir.scheduling``."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from calls.bot_tools import ToolError, register

from . import scheduling


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CancelArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=200, description="The patient's reason, in a few words (optional).")


class FindSlotsArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: dt.date | None = Field(None, description="Earliest day the patient can come (YYYY-MM-DD).")
    before: dt.date | None = Field(None, description="Latest day the patient can come (YYYY-MM-DD).")


class BookSlotArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: str = Field(..., min_length=1, max_length=64, description="A slot_id find_slots offered.")


def _run(fn, *args):
    try:
        return fn(*args)
    except scheduling.NoAppointment as exc:
        raise ToolError(409, str(exc), code="no_appointment")


@register("confirm_appointment", args=NoArgs)
def confirm_appointment(call, args: NoArgs) -> dict:
    return _run(scheduling.confirm_appointment, call)


@register("cancel_appointment", args=CancelArgs)
def cancel_appointment(call, args: CancelArgs) -> dict:
    return _run(scheduling.cancel_appointment, call, args.reason)


@register("find_slots", args=FindSlotsArgs)
def find_slots(call, args: FindSlotsArgs) -> dict:
    return _run(scheduling.find_slots, call, args.after, args.before)


@register("book_slot", args=BookSlotArgs)
def book_slot(call, args: BookSlotArgs) -> dict:
    return _run(scheduling.book_slot, call, args.slot_id)
