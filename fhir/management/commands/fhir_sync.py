"""manage.py fhir_sync --org SLUG --from DATE --to DATE: bring an EHR's appointments in now."""

from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from calls.policy import zone_named
from fhir.client import FhirError
from fhir.models import FhirConnection
from fhir.sync import sync_connection


def _moment(value: str, zone, name: str) -> dt.datetime:
    """An ISO date (midnight in the organisation's zone) or date-time (with offset)."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--{name}: '{value}' is not an ISO date (2026-05-04) or date-time.")
        moment = dt.datetime.combine(day, dt.time(0, 0))
    return timezone.make_aware(moment, zone) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = "Search the organisation's EHR for booked appointments in a date range and place their reminder calls."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="The organisation's slug.")
        parser.add_argument("--from", dest="start", required=True, help="First day (or date-time), included.")
        parser.add_argument("--to", dest="end", required=True, help="Last day, included (a date-time: excluded).")

    def handle(self, *args, org, start, end, **options):
        connection = FhirConnection.objects.select_related("organization").filter(organization__slug=org).first()
        if connection is None:
            raise CommandError(f"--org: the organisation '{org}' has no FHIR connection (add one in the admin).")
        zone = zone_named(connection.organization.timezone)
        begin = _moment(start, zone, "from")
        finish = _moment(end, zone, "to")
        if parse_datetime(end) is None:
            finish += dt.timedelta(days=1)  # a date: the whole day
        if finish <= begin:
            raise CommandError("--to must not be before --from.")
        try:
            result = sync_connection(connection, begin, finish)
        except FhirError as exc:
            raise CommandError(str(exc))
        self.stdout.write(json.dumps(result.as_dict(), sort_keys=True))
