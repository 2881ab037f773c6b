"""Recount the roll-ups: the answer rate counts dialled calls answered by a person
(calls.rollup.DIALLED, ANSWERED_BY_PERSON), not every dial-out and every pick-up."""

from django.db import migrations


def recount(apps, schema_editor):
    from types import SimpleNamespace

    from calls import rollup  # app code only when the migration runs, never at graph loading

    models = SimpleNamespace(**{name: apps.get_model("calls", name)
                                for name in ("CallSession", "CallEvent", "CallDay", "TurnCount", "TurnBand")})
    for org_id in apps.get_model("organizations", "Organization").objects.values_list("pk", flat=True):
        rollup.rebuild(org_id, models=models)


class Migration(migrations.Migration):
    dependencies = [("calls", "0007_dashboard_rollup")]
    operations = [migrations.RunPython(recount, migrations.RunPython.noop)]
