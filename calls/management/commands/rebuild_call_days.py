from django.core.management.base import BaseCommand, CommandError

from calls import rollup
from organizations.models import Organization


class Command(BaseCommand):
    help = (
        "Recount the dashboard's daily roll-ups (calls.rollup) from the calls and metrics events, "
        "after rows were written around the state machine (bulk imports, a restore, SQL by hand). "
        "--check only compares them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", action="append", default=[], help="An organisation's id or slug (repeatable; default: all).")
        parser.add_argument("--check", action="store_true", help="Compare the roll-ups with the calls; exit 1 when they differ.")

    def handle(self, *args, org, check, **options):
        orgs = Organization.objects.order_by("pk")
        if org:
            ids = [o for o in org if o.isdigit()]
            orgs = orgs.filter(pk__in=ids) | orgs.filter(slug__in=[o for o in org if not o.isdigit()])
            if orgs.count() != len(set(org)):
                raise CommandError("Unknown organisation among: " + ", ".join(org))
        differ = []
        for o in orgs:
            if check:
                held, counted = rollup.totals(o.pk), rollup.recount(o.pk)
                same = held == counted
                if not same:
                    differ.append(o.slug)
                self.stdout.write(f"{o.slug}: roll-up {held}, calls {counted}{'' if same else '  DIFFERENT'}")
            else:
                rollup.rebuild(o.pk)
                self.stdout.write(f"{o.slug}: {rollup.totals(o.pk)}")
        if differ:
            raise SystemExit(1)
