from django.core.management.base import BaseCommand

from calls.retention import purge_expired


class Command(BaseCommand):
    help = (
        "Purge transcripts, outcome notes and event payloads of calls older than their organisation's "
        "transcript_retention_days (what Celery beat does every hour)."
    )

    def handle(self, *args, **options):
        purged = purge_expired()
        self.stdout.write(f"Purged {sum(purged.values())} call(s) in {len(purged)} organisation(s).")
