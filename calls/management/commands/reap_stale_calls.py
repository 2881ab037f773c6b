import time

from django.core.management.base import BaseCommand

from calls.reaper import reap_stale_calls


class Command(BaseCommand):
    help = "End calls that stopped reporting (what Celery beat does every minute); --loop keeps running."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="Run every --interval seconds until stopped.")
        parser.add_argument("--interval", type=int, default=60)

    def handle(self, *args, loop, interval, **options):
        while True:
            count = reap_stale_calls()
            self.stdout.write(f"Ended {count} stale call(s).")
            if not loop:
                return
            time.sleep(interval)
