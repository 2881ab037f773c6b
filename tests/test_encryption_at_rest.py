"""What a database dump shows of patient data and secrets: no clear text (myrobot/crypto.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from calls.events import apply_bot_message
from calls.models import CallEvent, CallSession
from myrobot import crypto
from organizations.models import Organization
from patients.models import Patient
from tests import factories
from webhooks.models import WebhookDelivery, WebhookEndpoint

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db

TRANSCRIPT_TEXT = "my knee still hurts after the injection"
NOTES = "Allergic to penicillin, will bring the referral"
DATA_SECRET = "Dr Hollis, oncology follow-up"
DIALIN_SECRET = "c2VjcmV0LWhtYWMta2V5LWZvci1kYWlseQ=="


def raw_rows(sql: str, params=()) -> str:
    """Everything the table holds for these rows, as the database stores it."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return repr(cursor.fetchall())


def _call_with_phi():
    org = factories.make_org(dialin_webhook_secret=DIALIN_SECRET)
    wf = factories.make_workflow(org)
    patient = factories.make_patient(org, data={"clinician": DATA_SECRET})
    call = factories.make_call(org, wf, patient)
    call.status = "in_progress"
    call.save(update_fields=["status"])
    now = timezone.now().isoformat()
    apply_bot_message(call.pk, {"seq": 1, "event": "transcript", "at": now,
                                "data": {"role": "user", "text": TRANSCRIPT_TEXT}})
    apply_bot_message(call.pk, {"seq": 2, "event": "outcome", "at": now,
                                "data": {"result": "confirmed", "notes": NOTES, "data": {"who": DATA_SECRET}}})
    endpoint = WebhookEndpoint.objects.create(organization=org, url="https://ehr.example.org/hook")
    WebhookDelivery.objects.create(endpoint=endpoint, organization=org, event_type="call.ended",
                                   event_key=f"call.ended:{call.pk}",
                                   payload={"session_id": str(call.pk), "outcome": {"notes": NOTES}})
    return org, patient, call, endpoint


def test_raw_rows_hold_no_clear_text_and_the_models_read_it_back():
    org, patient, call, endpoint = _call_with_phi()
    dump = "".join([
        raw_rows("SELECT * FROM calls_callsession WHERE id = %s", [call.pk.hex if connection.vendor == "sqlite" else call.pk]),
        raw_rows("SELECT * FROM calls_callevent WHERE call_id = %s", [call.pk.hex if connection.vendor == "sqlite" else call.pk]),
        raw_rows("SELECT * FROM patients_patient WHERE id = %s", [patient.pk]),
        raw_rows("SELECT * FROM organizations_organization WHERE id = %s", [org.pk]),
        raw_rows("SELECT * FROM webhooks_webhookendpoint WHERE id = %s", [endpoint.pk]),
        raw_rows("SELECT * FROM webhooks_webhookdelivery WHERE endpoint_id = %s", [endpoint.pk]),
    ])
    assert "confirmed" in dump  # the dump is real: the outcome's result stays readable
    for clear in (TRANSCRIPT_TEXT, "knee", NOTES, "penicillin", DATA_SECRET, "oncology", DIALIN_SECRET,
                  endpoint.secret):
        assert clear not in dump, clear
    assert dump.count(crypto.PREFIX) >= 8

    call = CallSession.objects.get(pk=call.pk)
    assert call.transcript[0]["text"] == TRANSCRIPT_TEXT
    assert call.outcome == {"result": "confirmed", "notes": NOTES, "data": {"who": DATA_SECRET}}
    assert Patient.objects.get(pk=patient.pk).data == {"clinician": DATA_SECRET}
    assert Organization.objects.get(pk=org.pk).dialin_webhook_secret == DIALIN_SECRET
    assert CallEvent.objects.get(call=call, kind="transcript").data["text"] == TRANSCRIPT_TEXT
    # What stays queryable still is: the outcome's result.
    assert CallSession.objects.filter(outcome__result="confirmed").count() == 1
    assert list(CallSession.objects.filter(pk=call.pk).values_list("outcome__notes", flat=True)) == [NOTES]


def test_rotate_keys_moves_every_row_to_the_newest_key(settings):
    org, patient, call, endpoint = _call_with_phi()
    old = list(settings.FIELD_ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *old]
    call_command("rotate_keys")
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key dropped: everything still reads
    assert CallSession.objects.get(pk=call.pk).transcript[0]["text"] == TRANSCRIPT_TEXT
    assert Patient.objects.get(pk=patient.pk).data == {"clinician": DATA_SECRET}
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret
    assert Organization.objects.get(pk=org.pk).dialin_webhook_secret == DIALIN_SECRET
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # a key that never wrote them
    with pytest.raises(crypto.DecryptionError, match="FIELD_ENCRYPTION_KEYS"):
        Patient.objects.get(pk=patient.pk)


def test_rows_written_in_clear_before_are_encrypted_by_rotate_keys():
    org = factories.make_org()
    patient = factories.make_patient(org)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE patients_patient SET data = %s WHERE id = %s", ['{"legacy": "clear value"}', patient.pk])
    assert Patient.objects.get(pk=patient.pk).data == {"legacy": "clear value"}  # read as it is
    call_command("rotate_keys")
    assert "clear value" not in raw_rows("SELECT data FROM patients_patient WHERE id = %s", [patient.pk])
    assert Patient.objects.get(pk=patient.pk).data == {"legacy": "clear value"}


def test_production_without_a_key_refuses_to_write_and_never_takes_the_development_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS is not set"):
        factories.make_patient(factories.make_org())


def _check_deploy(**env) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "ENV": "production", "SECRET_KEY": "x" * 60, "HOME": "/tmp"}
    base.update(env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_warns_in_production_without_a_key_and_takes_no_development_key(settings):
    result = _check_deploy()
    assert "myrobot.W001" in result.stdout + result.stderr
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stdout + result.stderr
    # The development key given explicitly counts as no key in production.
    result = _check_deploy(FIELD_ENCRYPTION_KEYS=settings.DEVELOPMENT_FIELD_KEY)
    assert "myrobot.W001" in result.stdout + result.stderr
    result = _check_deploy(FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    assert "myrobot.W001" not in result.stdout + result.stderr
