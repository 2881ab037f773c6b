import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from campaigns import services


class Command(BaseCommand):
    help = "Release held campaign calls at each campaign's pace (what Celery beat does); --loop keeps running."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true")
        parser.add_argument("--interval", type=float, default=2.0)

    def handle(self, *args, loop, interval, **options):
        while True:
            started = time.monotonic()
            try:
                result = services.release_due()
                if result.released or result.completed or not loop:
                    self.stdout.write(f"released {result.released}, completed {result.completed}")
            except Exception as exc:  # noqa: BLE001 - the database restarting: try again next tick
                self.stderr.write(f"campaign tick failed: {exc}")
                close_old_connections()
            if not loop:
                return
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
