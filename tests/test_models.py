import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from calls.models import CallEvent, CallSession, CallStatus
from calls.state import transition
from organizations.models import ApiKey, hash_api_key
from patients.models import Patient

from tests import factories


def test_bad_phone_is_a_clear_error_on_the_phone_field(org):
    p = Patient(organization=org, first_name="Bob", phone="12345")
    with pytest.raises(ValidationError) as exc:
        p.full_clean()
    assert "phone" in exc.value.message_dict
    assert "E.164" in " ".join(exc.value.message_dict["phone"])


def test_phone_is_normalised_to_e164(org):
    p = Patient(organization=org, first_name="Bob", phone="(415) 555-0123")
    p.full_clean()
    assert p.phone == "+14155550123"


def test_external_id_unique_within_org_but_not_across(org, other_org):
    factories.make_patient(org, external_id="X1")
    factories.make_patient(other_org, external_id="X1")
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.make_patient(org, external_id="X1")


def test_patients_without_external_id_do_not_collide(org):
    factories.make_patient(org, external_id="")
    factories.make_patient(org, external_id="")
    assert Patient.objects.filter(external_id__isnull=True).count() == 2


def test_api_key_is_stored_hashed_and_shown_once(org):
    key, raw = ApiKey.generate(org, name="Epic")
    assert raw.startswith("mr_")
    key.refresh_from_db()
    assert key.key_hash == hash_api_key(raw)
    assert raw not in (key.key_hash, key.prefix, str(key))
    assert ApiKey.authenticate(raw) == key
    assert ApiKey.authenticate(raw + "x") is None
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_revoked_api_key_no_longer_authenticates(org):
    key, raw = ApiKey.generate(org)
    key.revoke()
    assert ApiKey.authenticate(raw) is None


def test_api_key_of_inactive_org_does_not_authenticate(org):
    key, raw = ApiKey.generate(org)
    org.is_active = False
    org.save()
    assert ApiKey.authenticate(raw) is None


def test_dialin_call_id_is_unique(org):
    wf = factories.make_workflow(org, slug="triage", direction="dial_in")
    factories.make_call(org, wf, daily_call_id="c-1", daily_call_domain="d-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.make_call(org, wf, daily_call_id="c-1", daily_call_domain="d-1")
    # dial-out calls carry no call id and never collide
    factories.make_call(org, wf, direction="dial_out")
    factories.make_call(org, wf, direction="dial_out")


class TestStateMachine:
    def test_legal_path_writes_an_event_per_move(self, org, workflow):
        call = factories.make_call(org, workflow)
        for status in ["starting", "ringing", "in_progress", "completed"]:
            assert transition(call.pk, status)
        call.refresh_from_db()
        assert call.status == CallStatus.COMPLETED
        assert call.started_at and call.answered_at and call.ended_at
        moves = [(e.data["from"], e.data["to"]) for e in CallEvent.objects.filter(call=call, kind="status")]
        assert moves == [
            ("queued", "starting"),
            ("starting", "ringing"),
            ("ringing", "in_progress"),
            ("in_progress", "completed"),
        ]

    @pytest.mark.parametrize(
        "path,illegal",
        [
            ([], "in_progress"),
            ([], "completed"),
            (["starting", "ringing"], "waiting"),
            (["starting", "failed"], "in_progress"),
            (["canceled"], "starting"),
            (["starting", "in_progress", "completed"], "failed"),
        ],
    )
    def test_illegal_moves_are_refused_without_an_event(self, org, workflow, path, illegal):
        call = factories.make_call(org, workflow)
        for status in path:
            assert transition(call.pk, status)
        before = CallEvent.objects.filter(call=call).count()
        assert transition(call.pk, illegal) is False
        call.refresh_from_db()
        assert call.status == (path[-1] if path else "queued")
        assert CallEvent.objects.filter(call=call).count() == before

    @pytest.mark.parametrize("final", ["failed", "no_answer", "busy", "canceled"])
    def test_any_active_state_may_end(self, org, workflow, final):
        for path in ([], ["starting"], ["starting", "waiting"], ["starting", "ringing", "in_progress"]):
            call = factories.make_call(org, workflow)
            for status in path:
                transition(call.pk, status)
            assert transition(call.pk, final, reason="test")
            call.refresh_from_db()
            assert call.status == final and call.end_reason == "test" and call.ended_at

    def test_a_legal_move_is_stored_and_an_illegal_one_refused(self, org, workflow):
        call = factories.make_call(org, workflow)
        assert transition(call.pk, "starting")
        call.refresh_from_db()
        assert call.status == "starting"
        assert transition(call.pk, "completed") is False
        call.refresh_from_db()
        assert call.status == "starting"

    def test_a_stale_writer_cannot_overwrite_a_newer_status(self, org, workflow):
        call = factories.make_call(org, workflow)
        transition(call.pk, "starting")
        transition(call.pk, "in_progress")  # the bot reported
        stale = CallSession.objects.get(pk=call.pk)
        stale.status = "starting"  # what a slow task still believes
        assert transition(stale.pk, "ringing") is False
        assert CallSession.objects.get(pk=call.pk).status == "in_progress"
