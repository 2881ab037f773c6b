"""Who may be called, by which workflow: the one rule set, its one refusal and its one code table.

Every way into a call goes through these rules — the admin's "Call patient",
the REST API's start-call, Daily's dial-in webhook, campaigns (when patients
are added and when the campaign starts), follow-up attempts and the
dispatcher (when a scheduled or waiting call comes due) — so a rule changed
here holds everywhere. A refusal is a ``CallRefused`` whose ``code`` says what
kind of refusal it is; ``status`` is the HTTP status the API answers with:

=====================  ======  ==========================================
code                   status  when
=====================  ======  ==========================================
organization_inactive  409     the organisation is switched off
workflow_not_found     404     workflow of another organisation
patient_not_found      404     patient of another organisation
unknown_patients       422     a campaign names patients it cannot have
invalid_phone          422     the number to call is not a phone number
invalid_caller_id      422     the caller id is neither E.164 nor a Daily id
invalid                422     a required field is missing (dial-in ids)
no_targets             422     a campaign without any patient
workflow_inactive      409     the workflow is switched off
workflow_not_dialout   409     placing a call with a dial-in-only workflow
workflow_not_dialin    409     a dial-in to a dial-out-only workflow
dialin_call_conflict   409     a dial-in reusing another organisation's callId
do_not_call            409     the patient is marked do-not-call
no_consent             409     the patient has not consented to calls
idempotency_conflict   409     Idempotency-Key reused with another body
not_cancelable         409     cancel on a call that has already ended
not_allowed            409     a campaign change its status does not allow
not_configured         503     the deployment lacks what a start needs
=====================  ======  ==========================================

``not_configured`` is 503 (Service Unavailable), not 409: nothing about the
request is wrong and the client cannot fix it; the server's operator must set
the missing variables (``botrunner.start.check_start_config()`` lists them).

The checks come in parts, so each caller runs each rule once:
``workflow_refusal`` (organisation and workflow), ``patient_refusal`` (the
patient), ``number_refusal`` (do-not-call held per number) and ``refusal``
(all three, for a dial-out that comes due or is being dialled). They return the
refusal (or None); ``check_*`` raise it.
"""

from __future__ import annotations

from functools import lru_cache

from botrunner.start import check_start_config
from patients.models import Patient
from patients.phone import try_normalize_phone

STATUS_BY_CODE = {
    "organization_inactive": 409,
    "workflow_not_found": 404,
    "patient_not_found": 404,
    "unknown_patients": 422,
    "invalid_phone": 422,
    "invalid_caller_id": 422,
    "invalid": 422,
    "no_targets": 422,
    "workflow_inactive": 409,
    "workflow_not_dialout": 409,
    "workflow_not_dialin": 409,
    "dialin_call_conflict": 409,
    "do_not_call": 409,
    "no_consent": 409,
    "idempotency_conflict": 409,
    "not_cancelable": 409,
    "not_allowed": 409,
    "not_configured": 503,
}


class CallRefused(Exception):
    """A call (or campaign) that may not be placed, accepted or changed, with a reason for a person."""

    def __init__(self, code: str, message: str, field: str | None = None, errors: list[dict] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 409)

    def __str__(self) -> str:
        return self.message


# Phone numbers are parsed once per process and number: a 5,000-patient campaign
# checks each number when it is added and again when it starts.
normalized_phone = lru_cache(maxsize=65536)(try_normalize_phone)


def check_deployment() -> None:
    """Refuse (``not_configured``) when this server cannot start a bot at all."""
    problems = check_start_config()
    if problems:
        raise CallRefused(
            "not_configured",
            "This server cannot start calls until its operator fixes its configuration: " + " ".join(problems),
        )


def workflow_refusal(organization, workflow, *, dialin: bool = False) -> CallRefused | None:
    """Why ``workflow`` may not take (``dialin``) or place a call for ``organization``; None: it may."""
    if not organization.is_active:
        return CallRefused("organization_inactive", f"The organisation {organization.name} is inactive.")
    if workflow.organization_id != organization.pk:
        return CallRefused("workflow_not_found", "No such workflow in this organisation.", field="workflow")
    if not workflow.is_active:
        return CallRefused("workflow_inactive", f"The workflow '{workflow.slug}' is inactive.", field="workflow")
    if dialin and not workflow.takes_dialin:
        return CallRefused(
            "workflow_not_dialin", f"The workflow '{workflow.slug}' does not take dial-in calls.", field="workflow"
        )
    if not dialin and not workflow.dials_out:
        return CallRefused(
            "workflow_not_dialout", f"The workflow '{workflow.slug}' does not place calls (it is dial-in only).",
            field="workflow",
        )
    return None


def patient_refusal(organization, patient, *, check_phone: bool = False) -> CallRefused | None:
    """Why ``patient`` may not be rung by ``organization`` (None: they may).

    ``check_phone``: the patient's own number must be a phone number too (a
    campaign rings that number; a start-call may give another one).
    """
    if patient is None or patient.organization_id != organization.pk:
        return CallRefused("patient_not_found", "No such patient in this organisation.", field="patient")
    if patient.do_not_call:
        return CallRefused("do_not_call", "The patient is marked do-not-call.", field="patient")
    if not patient.consent_to_call:
        return CallRefused("no_consent", "The patient has not consented to be called.", field="patient")
    if check_phone and normalized_phone(patient.phone or "") is None:
        return CallRefused(
            "invalid_phone",
            "The patient's phone number is not a valid phone number: correct it or give phone_number.",
            field="phone_number",
        )
    return None


def do_not_call_numbers(organization_id, numbers) -> set[str]:
    """Those of ``numbers`` that are do-not-call in the organisation.

    Do-not-call is held per number as well as per record: a number is
    do-not-call when any of the organisation's patients with that number is
    marked so, whatever name or record a later call gives it.
    """
    numbers = sorted({n for n in numbers if n})
    found: set[str] = set()
    for i in range(0, len(numbers), 900):  # under SQLite's limit of query parameters
        found.update(
            Patient.objects.filter(organization_id=organization_id, phone__in=numbers[i:i + 900], do_not_call=True)
            .values_list("phone", flat=True)
        )
    return found


def number_dnc_query(organization_id, number):
    """The do-not-call patients on ``number`` (an ``Exists`` of it marks a call's number in its own query)."""
    return Patient.objects.filter(organization_id=organization_id, phone=number, do_not_call=True)


def number_refusal(organization, number: str | None, *, is_dnc: bool | None = None) -> CallRefused | None:
    """Why ``number`` may not be rung by ``organization`` (None: it may).

    ``is_dnc``: already read with the call (``calls.starting.load_call``), so not asked again.
    """
    if is_dnc is None:
        is_dnc = bool(number) and number_dnc_query(organization.pk, number).exists()
    if is_dnc:
        return CallRefused(
            "do_not_call", "This phone number is marked do-not-call (on a patient of the organisation).",
            field="phone_number",
        )
    return None


def refusal(organization, workflow, patient, number: str | None = None, *, number_is_dnc: bool | None = None
            ) -> CallRefused | None:
    """Why a dial-out to ``patient`` at ``number`` may not ring now (None: it may).

    Checked when placed, when a scheduled attempt comes due and at the moment of
    dialling (``calls.starting``), so a change in between (do-not-call, consent,
    a switched-off workflow) holds for calls already waiting.
    """
    return (
        workflow_refusal(organization, workflow)
        or patient_refusal(organization, patient)
        or number_refusal(organization, number, is_dnc=number_is_dnc)
    )


def check_workflow(organization, workflow, *, dialin: bool = False) -> None:
    """``workflow_refusal``, raised."""
    refused = workflow_refusal(organization, workflow, dialin=dialin)
    if refused is not None:
        raise refused


def check_patient(organization, patient) -> None:
    """``patient_refusal``, raised."""
    refused = patient_refusal(organization, patient)
    if refused is not None:
        raise refused


def check_number(organization, number: str) -> None:
    """``number_refusal``, raised."""
    refused = number_refusal(organization, number)
    if refused is not None:
        raise refused


def skip_reason(organization, patient, dnc_numbers: set[str] = frozenset()) -> str:
    """A campaign's reason to skip ``patient``: a refusal's code ('' when they may be called).

    ``dnc_numbers``: ``do_not_call_numbers`` of the campaign's numbers, read once for all.
    """
    refused = patient_refusal(organization, patient, check_phone=True)
    if refused is None and normalized_phone(patient.phone or "") in dnc_numbers:
        return "do_not_call"
    return refused.code if refused is not None else ""
