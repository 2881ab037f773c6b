"""Calling law and identity on the bot's side: the disclosure, opt-out, and verification.

Pure text and one small HTTP client, from the ``AgentRequest`` alone (no Django):

* the disclosure said first to a person — the clinic, an automated assistant, how
  to stop the calls — before anything personal (``disclosure``);
* the words for opting out and for a person who cannot confirm who they are;
* what the LLM is told while the person is not verified (``verification_rules``)
  and the tool schemas (``verify_identity``, ``opt_out``);
* ``ServerTools``: the bot → server tool channel (``POST {tools_url}{name}`` with
  the status token), which answers ``verify_identity`` — the patient's details
  beyond the first name come only from there, and only once verified.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .prompt import personalise

DEFAULT_DISCLOSURE = (
    "Hello, this is an automated assistant calling from {clinic}. "
    "To stop these calls, press {opt_out_digit} or say stop calling me at any time."
)
DEFAULT_DISCLOSURE_NO_DIGIT = (
    "Hello, this is an automated assistant calling from {clinic}. "
    "To stop these calls, say stop calling me at any time."
)
DIALIN_DISCLOSURE = "Hello, you have reached the automated assistant of {clinic}."

OPT_OUT_GOODBYE = "Understood. {clinic} will not call you again. Goodbye."
UNVERIFIED_GOODBYE = (
    "I'm sorry, I can't confirm who I'm speaking with, so I can't go on. "
    "Please call {clinic} at {callback_number}. Goodbye."
)
TOOLS_TIMEOUT_S = 10.0


def _values(req: Any) -> dict[str, Any]:
    digit = getattr(req.workflow, "opt_out_digit", "") or ""
    return {
        "clinic": req.client_name or "the clinic",
        "callback_number": spoken_number(getattr(req, "callback_number", "") or ""),
        "opt_out_digit": digit,
    }


def spoken_number(number: str) -> str:
    """A phone number as the bot should say it: its digits, grouped (+1 555 000 1111)."""
    digits = "".join(c for c in number if c.isdigit())
    if number.startswith("+1") and len(digits) == 11:
        return f"{digits[1:4]} {digits[4:7]} {digits[7:]}"
    return number


def disclosure(req: Any) -> str:
    """What is said first, once a person is on the line: only the clinic, the call-back number and the key."""
    wf = req.workflow
    text = getattr(wf, "disclosure_message", "") or ""
    if not text:
        if req.is_dialin:
            text = DIALIN_DISCLOSURE
        else:
            text = DEFAULT_DISCLOSURE if getattr(wf, "opt_out_digit", "") else DEFAULT_DISCLOSURE_NO_DIGIT
    # Only these names are filled (the server refuses others), so no patient value can get in.
    return personalise(text, _values(req)).strip()


def verifies(req: Any) -> bool:
    return (getattr(req.workflow, "verification", "none") or "none") != "none" and bool(getattr(req, "tools_url", None))


def verification_question(req: Any) -> str:
    """The opening question when the person must confirm who they are."""
    first = (req.patient_data or {}).get("first_name") or ""
    who = f"Am I speaking with {first}? " if first else ""
    if req.workflow.verification == "dob_and_zip":
        return who + "To protect your privacy, please tell me your date of birth and your ZIP code."
    return who + "To protect your privacy, please tell me your date of birth."


def verification_rules(req: Any) -> str:
    """The system prompt's rules until ``verify_identity`` says yes."""
    values = _values(req)
    first = (req.patient_data or {}).get("first_name") or "the patient"
    asks = "date of birth and ZIP code" if req.workflow.verification == "dob_and_zip" else "date of birth"
    return (
        f"You do not yet know whether you are speaking with {first}. Before anything else, ask for their "
        f"{asks} and call the verify_identity function with what they said (the date as YYYY-MM-DD). "
        "Until it answers verified, say nothing about the reason for the call or anything about the patient "
        f"beyond the first name. If the person says they are not {first}, or that they are a relative or "
        f"someone else, do not discuss anything: ask them to have {first} call {values['clinic']} at "
        f"{values['callback_number']}, then call end_call. When verify_identity answers verified, its "
        "patient_data is what you may now use; go on with the purpose of the call."
    )


def opt_out_rules(req: Any) -> str:
    return (
        "If the person asks not to be called again (for example 'stop calling me', 'take me off your list', "
        "in any language), call the opt_out function at once."
    )


def system_prompt(req: Any, base: str) -> str:
    """The prompt with the calling-law rules: opt-out always, verification while it is on."""
    parts = [base, opt_out_rules(req)]
    if verifies(req):
        parts.insert(1, verification_rules(req))
    return "\n\n".join(p for p in parts if p)


def opt_out_goodbye(req: Any) -> str:
    return personalise(OPT_OUT_GOODBYE, _values(req))


def unverified_goodbye(req: Any) -> str:
    return personalise(UNVERIFIED_GOODBYE, _values(req))


VERIFY_IDENTITY_PROPERTIES: dict[str, Any] = {
    "date_of_birth": {"type": "string", "description": "The date of birth the person said, as YYYY-MM-DD."},
    "postal_code": {"type": "string", "description": "The ZIP code the person said (when asked for)."},
}
OPT_OUT_PROPERTIES: dict[str, Any] = {}


class ToolCallError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ServerTools:
    """The bot → server tool channel: ``POST {tools_url}{name}``, bearer status token, JSON both ways."""

    def __init__(self, tools_url: str, token: str, *, timeout_s: float = TOOLS_TIMEOUT_S):
        self.tools_url = tools_url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def call(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                async with session.post(self.tools_url + name, json=args, headers=headers) as response:
                    try:
                        body = await response.json(content_type=None)
                    except ValueError:
                        body = {}
                    if response.status != 200:
                        detail = body.get("detail") if isinstance(body, dict) else ""
                        raise ToolCallError(response.status, str(detail or response.reason or ""))
                    return body if isinstance(body, dict) else {}
        except aiohttp.ClientError as e:
            raise ToolCallError(0, type(e).__name__)
        except TimeoutError:
            raise ToolCallError(0, "timeout")
