"""Small builders for test data (plain functions, no factory library)."""

from __future__ import annotations

import datetime
import itertools

from django.contrib.auth import get_user_model

from organizations.models import Organization, OrganizationMembership, Workflow
from patients.models import Patient

_seq = itertools.count(1)


# Tests place several calls to one patient whatever the limits: their organisations
# have no limit a day or a week, unless a test gives one.
NO_LIMITS = {"healthcare_calls_per_day": None, "healthcare_calls_per_week": None}


def make_org(slug=None, **kwargs) -> Organization:
    for name, value in NO_LIMITS.items():
        kwargs.setdefault(name, value)
    n = next(_seq)
    slug = slug or f"org-{n}"
    kwargs.setdefault("name", slug.replace("-", " ").title())
    return Organization.objects.create(slug=slug, **kwargs)


# Tests place calls "now" whatever the clock says: their workflows' calling
# window is open all week, all day, unless a test gives one (and tests/conftest.py
# lifts the 08:00–21:00 floor, except for tests marked ``calling_hours_floor``).
ALWAYS_OPEN = {"window_start": datetime.time(0, 0), "window_end": datetime.time.max, "window_days": [1, 2, 3, 4, 5, 6, 7]}


def make_workflow(org, slug="reminder", direction="dial_out", **kwargs) -> Workflow:
    for name, value in ALWAYS_OPEN.items():
        kwargs.setdefault(name, value)
    kwargs.setdefault("name", slug.replace("-", " ").title())
    kwargs.setdefault("instructions", "Remind {first_name} of the appointment.")
    kwargs.setdefault("first_message", "Hello {first_name}, this is {client_name}.")
    return Workflow.objects.create(organization=org, slug=slug, direction=direction, **kwargs)


def make_patient(org, phone=None, **kwargs) -> Patient:
    n = next(_seq)
    kwargs.setdefault("first_name", "Ada")
    kwargs.setdefault("last_name", f"Lovelace{n}")
    kwargs.setdefault("external_id", f"EHR-{n}")
    kwargs.setdefault("data", {"appointment": "Tuesday 10:30"})
    return Patient.objects.create(organization=org, phone=phone or f"+1415555{n % 10000:04d}", **kwargs)


def make_user(username=None, *, org=None, role=None, is_superuser=False, password="pw-123456"):
    User = get_user_model()
    username = username or f"user{next(_seq)}"
    user = User.objects.create_user(username=username, password=password, is_staff=True, is_superuser=is_superuser)
    if org is not None and role is not None:
        OrganizationMembership.objects.create(organization=org, user=user, role=role)
    return user


def make_call(org, workflow, patient=None, **kwargs):
    from calls.models import CallSession

    from django.utils import timezone

    kwargs.setdefault("direction", "dial_out" if workflow.direction != "dial_in" else "dial_in")
    if kwargs.get("status", "queued") == "queued":
        # Placed calls are handed to a worker at once (calls.services).
        kwargs.setdefault("queued_at", timezone.now())
        kwargs.setdefault("dispatched_at", timezone.now())
    if kwargs["direction"] == "dial_out":
        kwargs.setdefault("to_number", patient.phone if patient else "+14155550100")
    else:
        kwargs.setdefault("from_number", patient.phone if patient else "+14155550100")
        kwargs.setdefault("to_number", "+14155559999")
    return CallSession.objects.create(organization=org, workflow=workflow, patient=patient, **kwargs)
