"""Demo data for a first look: one clinic, two workflows, a few patients, two users.

In `calls`, the app that may import both `organizations` and `patients`.

Idempotent: running it again changes nothing that exists.
"""

import datetime as dt
import os
from zoneinfo import ZoneInfo

from botrunner.start import is_production
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from organizations.models import Organization, OrganizationMembership, Role, Workflow, WorkflowDirection
from patients.models import Patient

DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "myrobot-demo")

# Appointments fall on the next working days after the day the demo is seeded, so the
# reminder never speaks of a past date or a weekday that does not match it.
PATIENTS = [
    ("EHR-1001", "Ada", "Lovelace", "1985-12-10", "+14155550101", "10:30 with Dr. Okafor"),
    ("EHR-1002", "Grace", "Hopper", "1976-12-09", "+14155550102", "14:00 with Dr. Lin"),
    ("EHR-1003", "Alan", "Turing", "1990-06-23", "+14155550103", "09:15 with Dr. Okafor"),
    ("EHR-1004", "Katherine", "Johnson", "1968-08-26", "+14155550104", "11:45 with Dr. Ruiz"),
    ("EHR-1005", "Edsger", "Dijkstra", "1972-05-11", "+14155550105", "16:30 with Dr. Lin"),
]


def next_working_days(today: dt.date, count: int) -> list[dt.date]:
    """The ``count`` weekdays (Monday to Friday) after ``today``."""
    days, day = [], today
    while len(days) < count:
        day += dt.timedelta(days=1)
        if day.isoweekday() <= 5:
            days.append(day)
    return days


def appointment(day: dt.date, rest: str) -> str:
    return f"{day.strftime('%a')} {day.day} {day.strftime('%b')}, {rest}"


class Command(BaseCommand):
    help = "Create (idempotently) a demo organisation, workflows, patients, a staff user and a superuser."

    def handle(self, *args, **options):
        if is_production():
            raise CommandError(
                "seed_demo creates users with a published password: it refuses to run with ENV=production."
            )
        self._seed()

    @transaction.atomic
    def _seed(self):
        org, _ = Organization.objects.get_or_create(
            slug="sunrise-clinic", defaults={"name": "Sunrise Family Clinic", "timezone": "America/Los_Angeles"}
        )
        Workflow.objects.get_or_create(
            organization=org,
            slug="appointment-reminder",
            defaults={
                "name": "Appointment reminder",
                "direction": WorkflowDirection.DIAL_OUT,
                "instructions": (
                    "You are a friendly assistant calling on behalf of {client_name}. Remind {first_name} of "
                    "their appointment ({appointment}). Ask whether they will attend, want to reschedule, or "
                    "cancel. Record the outcome, then say goodbye and end the call. Never give medical advice."
                ),
                "first_message": "Hello, this is the assistant from {client_name} calling for {first_name}.",
                "speaks_first": "callee",
                "max_duration_s": 300,
                "outcome_results": ["confirmed", "rescheduled", "declined", "unreachable"],
                # Demo data: open around the clock, so "Call patient" rings whenever someone
                # tries it. Real workflows keep the default hours (Mon-Fri 09:00-19:00).
                "window_start": dt.time(0, 0),
                "window_end": dt.time.max,
                "window_days": [1, 2, 3, 4, 5, 6, 7],
            },
        )
        Workflow.objects.get_or_create(
            organization=org,
            slug="triage-line",
            defaults={
                "name": "Triage line",
                "direction": WorkflowDirection.DIAL_IN,
                "instructions": (
                    "You answer the phone for {client_name}. Ask the caller's name and reason for calling, "
                    "collect a call-back number, and tell them a nurse will call back. For an emergency, tell "
                    "them to hang up and dial 911. Record the outcome, then end the call."
                ),
                "first_message": "Thank you for calling {client_name}. How can I help you today?",
                "speaks_first": "bot",
                "max_duration_s": 600,
                "outcome_results": ["callback_requested", "emergency_redirected", "information_given"],
            },
        )
        today = dt.datetime.now(ZoneInfo(org.timezone)).date()
        for (external_id, first, last, dob, phone, rest), day in zip(PATIENTS, next_working_days(today, len(PATIENTS))):
            data = {"appointment": appointment(day, rest)}
            Patient.objects.get_or_create(
                organization=org,
                external_id=external_id,
                defaults={"first_name": first, "last_name": last, "date_of_birth": dob, "phone": phone, "data": data},
            )

        User = get_user_model()
        staff, created = User.objects.get_or_create(username="staff", defaults={"is_staff": True})
        if created:
            staff.set_password(DEMO_PASSWORD)
            staff.save()
        OrganizationMembership.objects.get_or_create(organization=org, user=staff, defaults={"role": Role.STAFF})
        admin_user, created = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            admin_user.set_password(DEMO_PASSWORD)
            admin_user.save()

        self.stdout.write(
            self.style.SUCCESS(
                "Demo ready: organisation 'sunrise-clinic', workflows 'appointment-reminder' (dial-out) and "
                "'triage-line' (dial-in), 5 patients.\n"
                f"Log in at {settings.PUBLIC_BASE_URL}/admin/ as staff / {DEMO_PASSWORD} (clinic staff) "
                f"or admin / {DEMO_PASSWORD} (superuser)."
            )
        )
