from django.core.management.base import BaseCommand, CommandError

from organizations.models import ApiKey, Organization


class Command(BaseCommand):
    help = "Create an API key for an organisation's EHR integration; the key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("org_slug")
        parser.add_argument("--name", default="EHR integration")

    def handle(self, *args, org_slug, name, **options):
        try:
            org = Organization.objects.get(slug=org_slug)
        except Organization.DoesNotExist:
            raise CommandError(f"No organisation with slug '{org_slug}'.")
        key, raw = ApiKey.generate(org, name=name)
        self.stderr.write(f"API key '{key.name}' for {org.name} (prefix {key.prefix}). Store it now; it is shown once:")
        self.stdout.write(raw)
