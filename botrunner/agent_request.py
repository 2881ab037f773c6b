"""The wire contract between the server and a bot.

Pure pydantic on purpose: ``bot.py`` imports this module on Pipecat Cloud, far
from our database, so nothing here may import Django or our apps. ``build()``
works on whatever CallSession-shaped object it is handed (duck typing).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DialinSettings(BaseModel):
    call_id: str
    call_domain: str
    from_phone: str = ""
    to_phone: str = ""


class DialoutSettings(BaseModel):
    phone_number: str
    caller_id: Optional[str] = None


class WorkflowConfig(BaseModel):
    slug: str
    name: str
    instructions: str = ""
    first_message: str = ""
    voice: str = ""
    speaks_first: Literal["bot", "callee"] = "bot"
    max_duration_s: int = 600
    max_dialout_attempts: int = 5
    outcome_results: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    # Call control (all optional, so a bot deployed before them keeps working).
    voicemail_message: str = ""      # only {clinic} and {callback_number}: never patient data
    leave_voicemail: bool = False
    transfer_number: str = ""        # E.164; empty = no transfer to a person
    silence_timeout_s: int = 10
    ring_timeout_s: int = 45
    language: str = ""               # BCP-47; empty = the speech services' default
    # Calling law and identity (optional too).
    disclosure_message: str = ""     # said first to a person; only {clinic}, {callback_number}, {opt_out_digit}
    opt_out_digit: str = ""          # the key that stops all calls ("" = by voice only)
    verification: Literal["none", "dob", "dob_and_zip"] = "none"


class AgentRequest(BaseModel):
    # Ignore unknown fields: a newer server must not break a bot image deployed earlier.
    model_config = ConfigDict(extra="ignore")

    room_url: str
    token: str
    session_id: str
    patient_id: str = ""
    patient_data: dict[str, Any] = Field(default_factory=dict)
    client_name: str = ""
    callback_number: str = ""        # the organisation's number a patient may call back
    organization_id: str
    organization_slug: str
    workflow: WorkflowConfig
    status_url: str
    status_token: str
    dialin_settings: Optional[DialinSettings] = None
    dialout_settings: Optional[DialoutSettings] = None
    # The bot → server tool channel: POST tools_url + <tool name> with
    # ``Authorization: Bearer <status_token>`` (docs/bot.md, "Tools on the server").
    # None from a server without it.
    tools_url: Optional[str] = None

    @model_validator(mode="after")
    def _exactly_one_direction(self) -> "AgentRequest":
        if (self.dialin_settings is None) == (self.dialout_settings is None):
            raise ValueError("exactly one of dialin_settings and dialout_settings must be set")
        return self

    @property
    def is_dialin(self) -> bool:
        return self.dialin_settings is not None


# Patient fields a bot may use to personalise its conversation. Everything else
# about the patient (phone, external id, flags) stays in our system.
PATIENT_FIELDS_FOR_BOT = ("first_name", "last_name", "preferred_language", "timezone")


def patient_data_for(patient: Any, workflow_config: dict[str, Any]) -> dict[str, Any]:
    """Only what the workflow needs leaves our system.

    A workflow may list ``config["patient_fields"]`` (names of Patient fields or
    keys of ``patient.data``); by default the bot gets the name, language,
    timezone and the patient's free-form ``data``.
    """
    if patient is None:
        return {}
    wanted = workflow_config.get("patient_fields")
    data = dict(getattr(patient, "data", None) or {})
    out: dict[str, Any] = {}
    if wanted is None:
        for f in PATIENT_FIELDS_FOR_BOT:
            value = getattr(patient, f, "")
            if value:
                out[f] = str(value)
        out.update(data)
        return out
    for name in wanted:
        if name in PATIENT_FIELDS_FOR_BOT or name == "date_of_birth":
            value = getattr(patient, name, None)
            if value:
                out[name] = str(value)
        elif name in data:
            out[name] = data[name]
    return out


# With verification on, what the bot gets before the person has confirmed who
# they are: enough to greet and to leave a call-back number, nothing else.
BEFORE_VERIFICATION_FIELDS = ("first_name", "preferred_language")
# Never sent to a bot whose workflow verifies: they are what the person must say.
VERIFICATION_SECRETS = ("date_of_birth", "postal_code")


def verifies(workflow_config: Any) -> bool:
    return (getattr(workflow_config, "verification", "none") or "none") != "none"


def patient_data_before_verification(patient: Any) -> dict[str, Any]:
    """The first name (and language): all a wrong person or a relative may hear about."""
    if patient is None:
        return {}
    return {f: str(getattr(patient, f)) for f in BEFORE_VERIFICATION_FIELDS if getattr(patient, f, "")}


def patient_data_after_verification(patient: Any, workflow_config: dict[str, Any]) -> dict[str, Any]:
    """What the bot gets once the person is verified: the workflow's fields, without the secrets."""
    data = patient_data_for(patient, workflow_config)
    for name in VERIFICATION_SECRETS:
        data.pop(name, None)
    return data


def language_for(patient: Any, workflow: Any) -> str:
    """The patient's preferred language, else the workflow's (BCP-47, e.g. ``es`` or ``en-US``)."""
    preferred = (getattr(patient, "preferred_language", "") or "").strip() if patient is not None else ""
    return preferred or (getattr(workflow, "language", "") or "").strip()


def build(
    call: Any, room_url: str, token: str, status_url: str, status_token: str, tools_url: str | None = None
) -> AgentRequest:
    """Turn a CallSession (with organization, workflow, patient loaded) into an AgentRequest.

    With the workflow's ``verification`` on, ``patient_data`` holds only what may
    be said before the person is verified; the rest comes from the server's
    ``verify_identity`` tool once they are.
    """
    wf = call.workflow
    org = call.organization
    workflow = WorkflowConfig(
        slug=wf.slug,
        name=wf.name,
        instructions=wf.instructions,
        first_message=wf.first_message,
        voice=wf.voice,
        speaks_first=wf.speaks_first,
        max_duration_s=wf.max_duration_s,
        max_dialout_attempts=wf.max_dialout_attempts,
        outcome_results=list(wf.outcome_results or []),
        config=dict(wf.config or {}),
        voicemail_message=wf.voicemail_message or "",
        leave_voicemail=bool(wf.leave_voicemail),
        transfer_number=wf.transfer_number or "",
        silence_timeout_s=wf.silence_timeout_s,
        ring_timeout_s=wf.ring_timeout_s,
        language=language_for(call.patient, wf),
        disclosure_message=getattr(wf, "disclosure_message", "") or "",
        opt_out_digit=getattr(wf, "opt_out_digit", "") or "",
        verification=getattr(wf, "verification", "none") or "none",
    )
    dialin = dialout = None
    if call.direction == "dial_in":
        dialin = DialinSettings(
            call_id=call.daily_call_id,
            call_domain=call.daily_call_domain,
            from_phone=call.from_number or "",
            to_phone=call.to_number or "",
        )
    else:
        dialout = DialoutSettings(
            phone_number=call.to_number,
            caller_id=call.from_number or None,
        )
    return AgentRequest(
        room_url=room_url,
        token=token,
        session_id=str(call.pk),
        patient_id=str(call.patient_id) if call.patient_id else "",
        patient_data=(
            patient_data_before_verification(call.patient) if verifies(workflow)
            else patient_data_for(call.patient, workflow.config)
        ),
        client_name=org.name,
        callback_number=getattr(org, "callback_number", "") or "",
        organization_id=str(org.pk),
        organization_slug=org.slug,
        workflow=workflow,
        status_url=status_url,
        status_token=status_token,
        dialin_settings=dialin,
        dialout_settings=dialout,
        tools_url=tools_url,
    )
