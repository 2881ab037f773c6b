"""The bot → server tool channel over HTTP (``calls.bot_tools`` has the contract and the tools).

Authenticated like the status socket: ``Authorization: Bearer <status token>``,
the per-call token stored hashed, valid until the call is final. A wrong token,
an unknown session and a finished call answer the same 401, so the channel
tells a guesser nothing.
"""

import uuid
from typing import Any

from ninja import Router

from myrobot.errors import ApiError, errors
from myrobot.validation import loads_strict

from . import bot_tools
from .events import token_matches

router = Router(tags=["bot"])

UNAUTHORISED = "Missing or invalid status token: send `Authorization: Bearer <status token>` (valid until the call ends)."


def _bearer(request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


@router.post(
    "/bot/{session_id}/tools/{name}",
    response={200: dict[str, Any], **errors(400, 401, 404, 409, 413, 422)},
    auth=None,
    url_name="bot_tool",
    openapi_extra={
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "description": "The tool's arguments.",
            "examples": [{"date_of_birth": "1980-03-04"}],
        }}}},
        "responses": {200: {"description": "The tool's result.", "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": True,
            "examples": [{"verified": True, "patient_data": {"first_name": "Ada", "appointment": "Tuesday 10:30"}}],
        }}}}},
    },
)
def bot_tool(request, session_id: str, name: str):
    """For the bot only: run the server-side tool `name` for this call (JSON arguments in, JSON result out)."""
    try:
        call_id = uuid.UUID(session_id)
    except ValueError:
        raise ApiError(401, UNAUTHORISED)
    if not token_matches(call_id, _bearer(request)):
        raise ApiError(401, UNAUTHORISED)
    body = request.body
    if body.strip():
        try:
            args = loads_strict(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "The request body is not valid JSON.")
    else:
        args = {}
    try:
        return bot_tools.call_tool(call_id, name, args)
    except bot_tools.ToolError as exc:
        raise ApiError(exc.status, exc.message, exc.errors)
