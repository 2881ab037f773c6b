"""Send due webhook deliveries (without Celery beat: run it with --loop)."""

import time

from django.core.management.base import BaseCommand

from webhooks import services


class Command(BaseCommand):
    help = "Send webhook deliveries that are due (retries, and any a crashed process left unsent)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="keep running, every --every seconds")
        parser.add_argument("--every", type=float, default=15.0)

    def handle(self, *args, loop=False, every=15.0, **options):
        while True:
            sent = services.sweep(send_inline=True)
            if sent or not loop:
                self.stdout.write(f"{sent} delivery attempt(s)")
            if not loop:
                return
            time.sleep(every)
