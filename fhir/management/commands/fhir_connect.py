"""manage.py fhir_connect ORG --base-url … --client-id … --key-file …: set up (or update) an EHR connection."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from fhir.keys import jwks_for
from fhir.models import Algorithm, FhirConnection
from organizations.models import Organization, Workflow


class Command(BaseCommand):
    help = "Connect an organisation to its EHR's FHIR R4 server (SMART Backend Services) and print the JWKS URL."

    def add_arguments(self, parser):
        parser.add_argument("org", help="The organisation's slug.")
        parser.add_argument("--base-url", required=True, help="The FHIR R4 base URL.")
        parser.add_argument("--client-id", required=True, help="The client id the EHR registered.")
        parser.add_argument("--key-file", required=True, help="PEM private key (RSA for RS384, P-384 for ES384).")
        parser.add_argument("--algorithm", choices=Algorithm.values, default=Algorithm.RS384)
        parser.add_argument("--workflow", required=True, help="Slug of the dial-out workflow that reminds patients.")
        parser.add_argument("--allow-writes", action="store_true", help="The EHR lets us update appointments.")

    def handle(self, *args, org, base_url, client_id, key_file, algorithm, workflow, allow_writes, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"org: no organisation '{org}'.")
        flow = Workflow.objects.filter(organization=organization, slug=workflow).first()
        if flow is None:
            raise CommandError(f"--workflow: no workflow '{workflow}' in {organization.slug}.")
        try:
            pem = Path(key_file).read_text()
        except OSError as exc:
            raise CommandError(f"--key-file: {exc.strerror}.")
        connection = FhirConnection.objects.filter(organization=organization).first() or FhirConnection(
            organization=organization)
        connection.base_url, connection.client_id, connection.algorithm = base_url, client_id, algorithm
        connection.private_key, connection.workflow, connection.allow_writes = pem, flow, allow_writes
        if allow_writes and "Appointment.write" not in connection.scopes:
            connection.scopes += " system/Appointment.write system/Slot.write"
        try:
            connection.full_clean()
            jwks = jwks_for(connection)
        except ValidationError as exc:
            raise CommandError("; ".join(f"--{k.replace('_', '-')}: {' '.join(v)}" for k, v in exc.message_dict.items()))
        except ValueError as exc:
            raise CommandError(f"--key-file: {exc}")
        connection.save()
        if allow_writes and not (flow.config or {}).get("scheduling"):
            flow.config = {**(flow.config or {}), "scheduling": True}  # the bot offers the scheduling tools
            flow.save(update_fields=["config", "updated_at"])
        url = settings.PUBLIC_BASE_URL + reverse("fhir:jwks", kwargs={"org_slug": organization.slug})
        self.stdout.write(f"JWKS URL: {url}\nkid: {jwks['keys'][0]['kid']}")
