"""Sample wire objects for tests (no database needed)."""

from __future__ import annotations

import uuid
from typing import Any

from botrunner.agent_request import AgentRequest, DialinSettings, DialoutSettings, WorkflowConfig


def agent_request(direction: str = "dial_out", **overrides: Any) -> AgentRequest:
    """A valid AgentRequest; ``direction`` is "dial_in" or "dial_out"."""
    session_id = overrides.pop("session_id", str(uuid.uuid4()))
    fields: dict[str, Any] = dict(
        room_url=f"https://fake-clinic.daily.co/mr-{session_id}",
        token="token-for-tests",
        session_id=session_id,
        patient_id="42",
        patient_data={"first_name": "Ada", "preferred_language": "en"},
        client_name="Sunrise Clinic",
        organization_id="7",
        organization_slug="sunrise",
        workflow=WorkflowConfig(slug="reminder", name="Appointment reminder", instructions="Remind.",
                                first_message="Hello!", max_duration_s=300, outcome_results=["confirmed"]),
        status_url=f"ws://localhost:8000/ws/bot/{session_id}/",
        status_token="status-token",
    )
    if direction == "dial_in":
        fields["dialin_settings"] = DialinSettings(call_id=str(uuid.uuid4()), call_domain=str(uuid.uuid4()),
                                                   from_phone="+15550000001", to_phone="+15550000002")
    else:
        fields["dialout_settings"] = DialoutSettings(phone_number="+15550000003", caller_id="+15550000002")
    fields.update(overrides)
    return AgentRequest(**fields)
