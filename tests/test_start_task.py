"""calls.tasks.start_call (calls.starting) against the fakes, over real HTTP, through the settings a user sets."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from botrunner.agent_request import AgentRequest
from calls import dispatcher
from calls.models import CallEvent, CallSession
from calls.starting import status_url_for
from calls.state import transition
from calls.tasks import start_call
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def dialout_call(org, patient):
    org.dialout_caller_id = "6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10"
    org.save()
    wf = factories.make_workflow(org, slug="reminder", direction="dial_out", max_duration_s=300)
    return factories.make_call(org, wf, patient, direction="dial_out", to_number=patient.phone, from_number="6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10")


@pytest.fixture
def dialin_call(org, patient):
    wf = factories.make_workflow(org, slug="triage", direction="dial_in")
    return factories.make_call(
        org, wf, patient, direction="dial_in", from_number=patient.phone, to_number="+14155559999",
        daily_call_id="call-123", daily_call_domain="domain-456",
    )


def reload(call):
    return CallSession.objects.get(pk=call.pk)


def kinds(call):
    return list(CallEvent.objects.filter(call=call).values_list("kind", flat=True))


def test_dialin_start(fake_daily, fake_runner, dialin_call, patient):
    start_call(str(dialin_call.pk))

    rooms = fake_daily.requests_to("POST /rooms")
    assert len(rooms) == 1
    props = rooms[0]["json"]["properties"]
    # Never the caller's number (Daily's dashboards show it); dial-out on, for a transfer to a person.
    assert props["sip"] == {"display_name": "Caller", "video": False, "sip_mode": "dial-in", "num_endpoints": 1}
    assert patient.phone not in str(rooms[0]["json"])
    assert props["enable_dialout"] is True
    assert fake_daily.requests_to("POST /meeting-tokens") == []  # signed locally

    assert len(fake_runner.started) == 1
    start = fake_runner.requests_to("POST /start")[0]["json"]
    assert start["createDailyRoom"] is False
    body = start["body"]
    req = AgentRequest.model_validate(body)
    assert req.session_id == str(dialin_call.pk)
    assert req.dialin_settings.call_id == "call-123" and req.dialin_settings.call_domain == "domain-456"
    assert "dialout_settings" not in body
    assert req.organization_slug == "clinic-a" and req.client_name == "Clinic A"
    assert req.patient_data["first_name"] == "Ada" and req.patient_data["appointment"] == "Tuesday 10:30"
    assert "phone" not in req.patient_data
    assert req.workflow.slug == "triage" and req.workflow.instructions
    assert req.status_url == status_url_for(dialin_call.pk)
    call = reload(dialin_call)
    assert req.room_url == call.daily_room_url
    claims = fake_daily.verify_token(req.token)
    assert claims["r"] == call.daily_room_name and claims["o"] is True
    assert claims["d"] == fake_daily.domain_id
    assert call.status == "starting" and call.bot_start_requested_at is not None
    assert "bot_start_requested" in kinds(call)


def test_dialout_start(fake_daily, fake_runner, dialout_call, patient):
    start_call(str(dialout_call.pk))
    props = fake_daily.requests_to("POST /rooms")[0]["json"]["properties"]
    assert props["enable_dialout"] is True and "sip" not in props
    body = fake_runner.started[0]
    assert body["dialout_settings"] == {"phone_number": patient.phone, "caller_id": "6f1c2a4e-8b7d-4c3e-9a21-0d5e7f8a9b10"}
    assert "dialin_settings" not in body


def test_rest_token_mode(fake_daily, fake_runner, dialout_call, settings):
    settings.DAILY_MEETING_TOKEN_MODE = "rest"
    start_call(str(dialout_call.pk))
    assert len(fake_daily.requests_to("POST /meeting-tokens")) == 1
    assert fake_runner.started[0]["token"]


def test_production_starts_on_pipecat_cloud_with_bearer(fake_daily, fake_runner, fake_pipecat, dialout_call):
    start_call(str(dialout_call.pk))
    assert fake_runner.requests == []
    starts = fake_pipecat.requests_to("POST /v1/public/*/start")
    assert len(starts) == 1
    assert starts[0]["headers"]["Authorization"] == f"Bearer {fake_pipecat.api_key}"
    assert starts[0]["json"]["createDailyRoom"] is False
    assert starts[0]["json"]["body"]["session_id"] == str(dialout_call.pk)


def test_missing_production_credentials_fail_the_call_with_the_variable_named(fake_daily, fake_pipecat, dialout_call, settings):
    settings.PIPECAT_API_KEY = ""
    start_call(str(dialout_call.pk))
    call = reload(dialout_call)
    assert call.status == "failed"
    assert "PIPECAT_API_KEY" in call.error
    assert fake_daily.requests_to("POST /rooms") == []


def test_missing_daily_key_fails_the_call(fake_runner, dialout_call, settings):
    settings.DAILY_API_KEY = ""
    start_call(str(dialout_call.pk))
    call = reload(dialout_call)
    assert call.status == "failed" and "DAILY_API_KEY" in call.error


def test_503_then_success(fake_daily, fake_runner, dialout_call):
    fake_runner.fail_next("POST /start", 503)
    start_call.delay(str(dialout_call.pk))  # eager: retries run inline
    call = reload(dialout_call)
    assert len(fake_runner.requests_to("POST /start")) == 2
    assert len(fake_runner.started) == 1
    assert call.status == "starting" and "start_retry" in kinds(call)
    assert len(fake_daily.requests_to("POST /rooms")) == 1  # the retry found the room it stored...
    assert fake_daily.requests_to(f"GET /rooms/{call.daily_room_name}")
    assert len(fake_daily.rooms) == 1  # ...and did not make a second one


def test_400_is_not_retried_and_fails_with_reason_and_room_deleted(fake_daily, fake_pipecat, dialout_call):
    fake_pipecat.fail_next("POST /v1/public/*/start", 400, json={"error": "Invalid body", "code": "400"})
    start_call.delay(str(dialout_call.pk))
    call = reload(dialout_call)
    assert len(fake_pipecat.requests_to("POST /v1/public/*/start")) == 1
    assert call.status == "failed" and call.error
    assert call.daily_room_name not in fake_daily.rooms
    assert fake_daily.requests_to("DELETE /rooms/*")


@pytest.mark.parametrize("status", [502, 504])
def test_ambiguous_answers_are_not_retried_and_the_call_stays_starting(fake_daily, fake_pipecat, dialout_call, status):
    fake_pipecat.fail_next("POST /v1/public/*/start", status)
    start_call.delay(str(dialout_call.pk))
    call = reload(dialout_call)
    assert len(fake_pipecat.requests_to("POST /v1/public/*/start")) == 1
    assert call.status == "starting"
    assert "bot_start_unconfirmed" in kinds(call)
    # a redelivery of the same task does not start a second bot
    start_call(str(dialout_call.pk))
    assert len(fake_pipecat.requests_to("POST /v1/public/*/start")) == 1


def test_timeout_after_sending_is_not_retried(fake_daily, fake_runner, dialout_call, settings):
    settings.BOTRUNNER_START_TIMEOUT_S = 0.5
    fake_runner.hang_s = 2
    fake_runner.hang_next("POST /start")
    start_call.delay(str(dialout_call.pk))
    call = reload(dialout_call)
    assert call.status == "starting"
    assert "bot_start_unconfirmed" in kinds(call)
    assert len(fake_runner.requests_to("POST /start")) == 1


def test_connection_refused_is_retried_then_fails_clearly(fake_daily, dialout_call, settings):
    settings.ENV = "development"
    settings.LOCAL_SERVER_URL = "http://127.0.0.1:9"  # nothing listens there
    start_call.delay(str(dialout_call.pk))
    call = reload(dialout_call)
    assert call.status == "failed"
    assert "gave up after" in call.error
    assert call.daily_room_name not in fake_daily.rooms


def test_redelivery_makes_no_second_room_or_bot(fake_daily, fake_runner, dialout_call):
    start_call(str(dialout_call.pk))
    start_call(str(dialout_call.pk))
    assert len(fake_daily.rooms) == 1
    assert len(fake_runner.started) == 1


def test_canceled_call_is_left_alone(fake_daily, fake_runner, dialout_call):
    transition(dialout_call.pk, "canceled")
    start_call(str(dialout_call.pk))
    assert fake_daily.requests == [] and fake_runner.requests == []


def test_one_query_loads_call_patient_org_and_workflow(fake_daily, fake_runner, dialout_call):
    with CaptureQueriesContext(connection) as ctx:
        start_call(str(dialout_call.pk))
    selects = [q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    loads = [s for s in selects if "calls_callsession" in s and "patients_patient" in s]
    assert len(loads) == 1
    assert "organizations_organization" in loads[0] and "organizations_workflow" in loads[0]
    # No patient query of its own (the load's do-not-call subquery on the number is part of the one load).
    assert not any(s for s in selects if s.startswith('SELECT') and 'FROM "patients_patient"' in s and s not in loads)


@pytest.fixture
def short_capacity_backoff(settings):
    """Set before the worker starts (it copies these settings)."""
    settings.CALL_CAPACITY_BACKOFF_S = 0.5
    settings.CALL_CAPACITY_BACKOFF_MAX_S = 1


def test_429_defers_to_the_queue_then_the_dispatcher_starts_it_once_with_a_real_worker(
    short_capacity_backoff, fake_daily, fake_pipecat, celery_worker, dialout_call,
):
    """With Redis: Pipecat Cloud at capacity sends the call back to the queue (no
    Celery retry); after the backoff the dispatcher hands it to the worker again."""
    import time

    fake_pipecat.at_capacity(times=1)
    start_call.delay(str(dialout_call.pk))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "start_deferred" not in kinds(dialout_call):
        time.sleep(0.05)
    dialout_call.refresh_from_db()
    assert dialout_call.status == "queued", "".join(celery_worker.output[-40:])
    while time.monotonic() < deadline and not fake_pipecat.started:
        dispatcher.dispatch(start_call.delay, reap=False)
        time.sleep(0.1)
    starts = fake_pipecat.requests_to("POST /v1/public/*/start")
    assert len(starts) == 2, "".join(celery_worker.output[-40:])
    assert len(fake_pipecat.started) == 1
    assert "start_retry" not in kinds(dialout_call)


# --- rooms made for calls that do not start ------------------------------------------


def test_a_dialin_start_makes_one_dialin_room(fake_daily, fake_runner, dialin_call):
    start_call(str(dialin_call.pk))
    assert len(fake_daily.rooms) == 1 and len(fake_runner.started) == 1
    props = fake_daily.requests_to("POST /rooms")[0]["json"]["properties"]
    assert props["sip"]["sip_mode"] == "dial-in"


def test_a_start_with_a_room_hint_orders_the_room_before_it_reads_the_call(
    fake_daily, fake_runner, dialin_call
):
    from calls import starting

    ordered_at = []
    real_order = starting.order_room_for

    def order_room_for(session_id, hint):
        ordered_at.append(len(connection.queries))
        return real_order(session_id, hint)

    starting.order_room_for = order_room_for
    try:
        with CaptureQueriesContext(connection):
            start_call(str(dialin_call.pk), starting.room_hint(dialin_call))
    finally:
        starting.order_room_for = real_order
    assert ordered_at == [0]  # no query before the room was ordered
    props = fake_daily.requests_to("POST /rooms")[0]["json"]["properties"]
    assert props["sip"]["sip_mode"] == "dial-in" and props["sip"]["display_name"]
    assert len(fake_daily.rooms) == 1 and len(fake_runner.started) == 1


@pytest.mark.parametrize("hint", [None, {}, {"dialin": True}, {"dialin": False, "max_duration_s": "x"}, "room"])
def test_a_start_without_a_usable_room_hint_reads_the_call_first(fake_daily, fake_runner, dialout_call, hint):
    start_call(str(dialout_call.pk), hint)
    assert len(fake_daily.rooms) == 1 and len(fake_runner.started) == 1
    assert "sip_mode" not in str(fake_daily.requests_to("POST /rooms")[0]["json"])


def test_a_hinted_room_for_a_call_that_will_not_start_is_deleted_again(fake_daily, fake_runner, dialout_call):
    from calls import starting

    hint = starting.room_hint(dialout_call)
    transition(dialout_call.pk, "canceled")
    start_call(str(dialout_call.pk), hint)
    start_call(str(__import__("uuid").uuid4()), hint)
    assert fake_runner.requests == []
    made = [r["json"]["name"] for r in fake_daily.requests_to("POST /rooms")]
    deleted = [r["path"].rsplit("/", 1)[-1] for r in fake_daily.requests if r["method"] == "DELETE"]
    assert len(made) == 2 and sorted(deleted) == sorted(made)


def test_a_canceled_call_makes_no_room_and_starts_no_bot(fake_daily, fake_runner, dialout_call):
    transition(dialout_call.pk, "canceled")
    start_call(str(dialout_call.pk))
    assert fake_runner.requests == []
    assert fake_daily.requests_to("POST /rooms") == []
    assert reload(dialout_call).status == "canceled"


def test_a_missing_call_makes_no_room(fake_daily, fake_runner):
    import uuid

    start_call(str(uuid.uuid4()))
    assert fake_runner.requests == [] and fake_daily.requests_to("POST /rooms") == []


def test_redelivery_keeps_the_room_and_starts_no_second_bot(fake_daily, fake_runner, dialout_call):
    start_call(str(dialout_call.pk))
    start_call(str(dialout_call.pk))
    assert len(fake_runner.started) == 1
    assert len(fake_daily.rooms) == 1


def test_after_the_last_retry_the_reason_says_it_gave_up_not_that_it_will_retry(fake_daily, fake_runner, dialout_call):
    fake_runner.fail_next("POST /start", 503, times=20)
    start_call.delay(str(dialout_call.pk))
    call = reload(dialout_call)
    assert call.status == "failed"
    assert "gave up after" in call.error and "will be retried" not in call.error
    assert "temporarily unavailable" in call.error


def test_the_start_request_is_dated_when_it_went_out_not_when_the_runner_answered(fake_daily, fake_runner, dialin_call):
    """A quick bot says "bot_started" before the runner's answer; the timeline lists the request first."""
    start_call(str(dialin_call.pk))
    call = reload(dialin_call)
    [requested] = CallEvent.objects.filter(call=call, kind="bot_start_requested")
    assert requested.at == call.bot_start_requested_at
