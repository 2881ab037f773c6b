"""Re-encrypt every encrypted column with the newest key of FIELD_ENCRYPTION_KEYS.

Put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it),
restart, run this, then drop the old keys. Rows written in clear before their
column was encrypted are encrypted too. It covers every installed app's models.
"""

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from myrobot.crypto import encrypted_field_names, reencrypt_model


class Command(BaseCommand):
    help = "Re-encrypt every encrypted column with the newest key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        for model in apps.get_models():
            names = encrypted_field_names(model)
            if not names:
                continue
            with transaction.atomic():
                rows = reencrypt_model(model)
            self.stdout.write(f"{model._meta.label}: {rows} rows ({', '.join(names)})")
