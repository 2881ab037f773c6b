"""Encryption at rest of single columns: a key ring from the environment and three model fields.

``FIELD_ENCRYPTION_KEYS`` (settings, from the environment) lists Fernet keys,
newest first: the newest encrypts, every key decrypts (``cryptography``'s
``MultiFernet``), so a key is rotated by putting a new one in front and running
``manage.py rotate_keys``, then dropping the old one. Without the variable a
development key is used — except with ``ENV=production``, where that key is
never accepted: there writing an encrypted value fails with a sentence saying
what to set, and ``manage.py check --deploy`` warns.

A stored value is ``enc1:`` + a Fernet token. A value without that prefix (a row
written before its column was encrypted) is read as it is, and ``rotate_keys``
encrypts it.

- ``EncryptedTextField``: a text column (secrets, keys).
- ``EncryptedJSONField``: any JSON value, stored as one encrypted JSON string
  (transcripts, patient data): nothing of it can be queried in SQL.
- ``PartlyEncryptedJSONField(encrypted_keys=(...))``: a JSON object whose listed
  keys' values are encrypted, the others kept queryable (an outcome's ``result``
  for the dashboard, a metrics event's ``turn_ms``).

Any app may use them (``from myrobot.crypto import EncryptedTextField``).
"""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "enc1:"

MISSING_KEY = (
    "FIELD_ENCRYPTION_KEYS is not set: with ENV=production patient data is written only encrypted. "
    "Set it to one or more Fernet keys, newest first, comma-separated (make one with "
    "`python -c \"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`)."
)


class DecryptionError(ImproperlyConfigured):
    """A stored value no key of FIELD_ENCRYPTION_KEYS opens."""


def configured_keys() -> tuple[str, ...]:
    return tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", ()) or ())


@lru_cache(maxsize=4)
def _ring(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes): "
            f"{exc}."
        ) from exc


def key_ring() -> MultiFernet:
    """The ring for the current settings (cached per key list)."""
    keys = configured_keys()
    if not keys:
        raise ImproperlyConfigured(MISSING_KEY)
    return _ring(keys)


def is_encrypted(value) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def encrypt(text: str) -> str:
    return PREFIX + key_ring().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(value: str) -> str:
    """The clear text of a stored value (a value without the prefix is returned as it is)."""
    if not is_encrypted(value):
        return value
    try:
        return key_ring().decrypt(value[len(PREFIX):].encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise DecryptionError(
            "A stored value could not be decrypted with any key of FIELD_ENCRYPTION_KEYS: "
            "put back the key it was written with (keys are tried newest first)."
        ) from exc


def rotate(value: str) -> str:
    """The value encrypted with the newest key (clear values are encrypted)."""
    if not is_encrypted(value):
        return encrypt(value)
    return PREFIX + key_ring().rotate(value[len(PREFIX):].encode("ascii")).decode("ascii")


def _is_plain(value) -> bool:
    """A Python value to store, not a query expression."""
    return value is not None and not hasattr(value, "resolve_expression")


# --- fields -------------------------------------------------------------------------


class EncryptedTextField(models.TextField):
    """Text stored encrypted; reads back as text. Not searchable or sortable in SQL."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if isinstance(value, str) else value

    def get_db_prep_save(self, value, connection):
        if _is_plain(value) and value != "":
            value = encrypt(str(value))
        return super().get_db_prep_save(value, connection)


class EncryptedJSONField(models.JSONField):
    """Any JSON value, stored as one encrypted JSON string."""

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if is_encrypted(value):
            return json.loads(decrypt(value))
        return value

    def get_db_prep_save(self, value, connection):
        if _is_plain(value):
            value = encrypt(json.dumps(value, cls=self.encoder))
        return super().get_db_prep_save(value, connection)


class PartlyEncryptedJSONField(models.JSONField):
    """A JSON object whose ``encrypted_keys`` hold encrypted values; the rest stays queryable."""

    def __init__(self, *args, encrypted_keys: tuple[str, ...] = (), **kwargs):
        self.encrypted_keys = tuple(encrypted_keys)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["encrypted_keys"] = self.encrypted_keys
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, dict):
            return {k: (json.loads(decrypt(v)) if k in self.encrypted_keys and is_encrypted(v) else v)
                    for k, v in value.items()}
        if is_encrypted(value):  # one key's value read alone (``values("outcome__notes")``)
            return json.loads(decrypt(value))
        return value

    def get_db_prep_save(self, value, connection):
        if _is_plain(value) and isinstance(value, dict):
            value = {k: (encrypt(json.dumps(v, cls=self.encoder)) if k in self.encrypted_keys else v)
                     for k, v in value.items()}
        return super().get_db_prep_save(value, connection)


ENCRYPTED_FIELDS = (EncryptedTextField, EncryptedJSONField, PartlyEncryptedJSONField)


# --- the deploy check ------------------------------------------------------------------------


@checks.register(checks.Tags.security, deploy=True)
def check_field_encryption_keys(app_configs=None, **kwargs):
    """`check --deploy`: production without a key of its own writes no patient data."""
    if (getattr(settings, "ENV", "development") or "").lower() != "production":
        return []
    if configured_keys():
        return []
    return [checks.Warning(MISSING_KEY, id="myrobot.W001")]


# --- re-encryption (rotate_keys, and the migrations that encrypted existing rows) ---------------


def encrypted_field_names(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, ENCRYPTED_FIELDS)]


def reencrypt_model(model, batch_size: int = 500) -> int:
    """Write every row's encrypted columns again with the newest key (rows
    written in clear before get encrypted); returns the rows written.

    Works on a migration's historical models too (their fields are these classes).
    """
    names = encrypted_field_names(model)
    if not names:
        return 0
    manager = model._base_manager
    written = 0
    last = None
    while True:
        qs = manager.order_by("pk").only("pk", *names)
        if last is not None:
            qs = qs.filter(pk__gt=last)
        rows = list(qs[:batch_size])
        if not rows:
            return written
        manager.bulk_update(rows, names)
        written += len(rows)
        last = rows[-1].pk


def reencrypt_app(app_label: str):
    """A migration's RunPython: encrypt the rows an app had before its columns were encrypted."""

    def run(apps, schema_editor):
        for model in apps.get_app_config(app_label).get_models():
            reencrypt_model(model)

    return run
