from django.conf import settings
from django.core.management.base import BaseCommand

from calls import dispatcher
from calls.tasks import start_call


class Command(BaseCommand):
    help = (
        "Start due scheduled calls and queued calls with a free slot, hand lost starts again and end stale calls "
        "(what Celery beat does every few seconds); --loop keeps running (make run starts it beside the server)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="Run every --interval seconds until stopped.")
        parser.add_argument("--interval", type=float, default=None, help="Seconds between ticks (DISPATCH_INTERVAL_S).")

    def handle(self, *args, loop, interval, **options):
        if not loop:
            self.stdout.write(str(dispatcher.dispatch(start_call.delay)))
            return
        interval = settings.DISPATCH_INTERVAL_S if interval is None else interval
        self.stdout.write(f"Dispatching calls every {interval:g} s (Ctrl-C to stop).")
        try:
            # -v 2 reports every tick, the quiet ones too.
            dispatcher.run_forever(
                start_call.delay, interval, out=self.stdout.write, every_tick=options["verbosity"] >= 2
            )
        except KeyboardInterrupt:
            pass
