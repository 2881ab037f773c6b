"""CallDay.dial_outs: every final dial-out (what /metrics counts as placed), apart
from ``dialled`` (only those really dialled, the answer rate's denominator);
the roll-ups are recounted."""

from django.db import migrations, models


def recount(apps, schema_editor):
    from types import SimpleNamespace

    from calls import rollup  # app code only when the migration runs, never at graph loading

    models_ = SimpleNamespace(**{name: apps.get_model("calls", name)
                                 for name in ("CallSession", "CallEvent", "CallDay", "TurnCount", "TurnBand")})
    for org_id in apps.get_model("organizations", "Organization").objects.values_list("pk", flat=True):
        rollup.rebuild(org_id, models=models_)


class Migration(migrations.Migration):
    dependencies = [("calls", "0010_merge_20261206_2031")]
    operations = [
        migrations.AddField(model_name="callday", name="dial_outs", field=models.IntegerField(default=0)),
        migrations.RunPython(recount, migrations.RunPython.noop),
    ]
