"""Webhooks out: the outbox on the final transition, signed delivery, retries, 410, roles."""

from __future__ import annotations

import threading
import time
import urllib.request
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from calls.models import CallStatus
from calls.state import transition
from organizations.models import ApiKey
from tests import factories
from tests.api_fixtures import auth
from webhooks import sending, services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


@pytest.fixture
def sends_nowhere(settings):
    """Sends go to the broker on a queue of their own that no worker takes (then purged)."""
    import uuid

    from myrobot.celery import app

    settings.WEBHOOK_QUEUE = f"test-nowhere-{uuid.uuid4().hex[:12]}"
    old = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = old
    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge(settings.WEBHOOK_QUEUE)
        except Exception:  # noqa: BLE001 - nothing was declared: nothing to purge
            pass


# Documentation names resolve, in these tests, to a public address (no DNS is asked).
PUBLIC_ADDRESS = "93.184.215.14"


@pytest.fixture(autouse=True)
def stub_dns(monkeypatch):
    """``webhooks.destinations.resolve`` answers from this table; other names go to the real resolver."""
    from webhooks import destinations

    table: dict[str, list[str]] = {}
    real = destinations.resolve

    def resolve(host, port):
        if host in table:
            return list(table[host])
        if host.endswith("example.org"):
            return [PUBLIC_ADDRESS]
        return real(host, port)

    monkeypatch.setattr(destinations, "resolve", resolve)
    return table


@pytest.fixture(autouse=True)
def _no_timed_retries(settings):
    # Retries are driven by the sweep in these tests, under a frozen clock.
    settings.WEBHOOK_SHORT_RETRY_S = 0
    settings.WEBHOOK_TIMEOUT_S = 2


def endpoint_for(org, receiver=None, *, url=None, events=("call.ended",), **kwargs):
    ep = WebhookEndpoint.objects.create(
        organization=org, url=url or receiver.hook_url, events=list(events), **kwargs
    )
    if receiver is not None:
        receiver.secret = ep.secret
    return ep


def ended_call(org, workflow, patient, **kwargs):
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS, **kwargs)
    assert transition(call.pk, CallStatus.COMPLETED, reason="completed")
    call.refresh_from_db()
    return call


# --- the outbox --------------------------------------------------------------------


def test_final_transition_writes_one_delivery_per_subscribed_endpoint(org, other_org, workflow, patient):
    a = endpoint_for(org, url="https://ehr.example.org/a")
    b = endpoint_for(org, url="https://ehr.example.org/b")
    endpoint_for(org, url="https://ehr.example.org/off", is_active=False)
    endpoint_for(org, url="https://ehr.example.org/campaigns", events=["campaign.finished"])
    endpoint_for(other_org, url="https://other.example.org/a")
    call = factories.make_call(org, workflow, patient, status=CallStatus.RINGING)

    assert transition(call.pk, CallStatus.IN_PROGRESS)
    assert WebhookDelivery.objects.count() == 0  # not final yet
    assert transition(call.pk, CallStatus.COMPLETED, reason="completed")
    assert not transition(call.pk, CallStatus.FAILED, reason="duplicate")  # a second `ended`

    deliveries = WebhookDelivery.objects.order_by("endpoint_id")
    assert [d.endpoint_id for d in deliveries] == [a.pk, b.pk]
    assert {d.event_key for d in deliveries} == {f"call.ended:{call.pk}"}
    assert len({d.message_id for d in deliveries}) == 2
    data = deliveries[0].payload
    assert data["session_id"] == str(call.pk)
    assert data["status"] == "completed"
    assert data["external_id"] == patient.external_id
    assert data["workflow"] == workflow.slug
    assert set(data) >= {
        "session_id", "external_id", "workflow", "direction", "status", "end_reason", "outcome", "attempt",
        "next_attempt_at", "campaign_id", "started_at", "answered_at", "ended_at",
    }
    text = str(data)
    assert patient.first_name not in text and patient.phone not in text


@pytest.mark.django_db(transaction=True)
def test_racing_duplicate_ended_messages_make_one_delivery_per_endpoint(org, workflow, patient, sends_nowhere):
    """The bot's `ended` delivered twice at once (a reconnect): one transition wins, one delivery each."""
    from calls.events import apply_bot_message

    a = endpoint_for(org, url="https://ehr.example.org/a")
    b = endpoint_for(org, url="https://ehr.example.org/b")
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS)
    barrier = threading.Barrier(4)
    errors = []

    def report(seq, reason):
        from django.db import connection

        try:
            barrier.wait(5)
            apply_bot_message(call.pk, {"seq": seq, "event": "ended", "data": {"reason": reason}})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=report, args=(seq, reason)) for seq, reason in
               [(10, "completed"), (11, "completed"), (12, "no_answer"), (13, "completed")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    call.refresh_from_db()
    assert call.is_final
    assert sorted(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == sorted([a.pk, b.pk])
    # The same event queued again (e.g. a replayed signal) adds nothing either.
    services.enqueue_event(org.pk, "call.ended", f"call.ended:{call.pk}", {})
    assert WebhookDelivery.objects.count() == 2


def test_delivery_rolls_back_with_the_transition(org, workflow, patient):
    from django.db import transaction

    endpoint_for(org, url="https://ehr.example.org/a")
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            transition(call.pk, CallStatus.COMPLETED)
            raise RuntimeError("the caller's transaction fails after the move")
    call.refresh_from_db()
    assert call.status == CallStatus.IN_PROGRESS
    assert not WebhookDelivery.objects.exists()


# --- sending -------------------------------------------------------------------------


def test_receiver_on_loopback_verifies_the_signature(org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    call = ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()

    assert services.send_delivery(delivery.pk) == DeliveryStatus.DELIVERED

    assert fake_receiver.rejected == []
    [got] = fake_receiver.verified
    assert got["id"] == delivery.message_id
    assert got["event"]["type"] == "call.ended"
    assert got["event"]["data"]["session_id"] == str(call.pk)
    assert "transcript" not in got["event"]["data"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 204)


def test_a_wrong_secret_fails_verification_at_the_receiver(org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    fake_receiver.secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # not the endpoint's
    ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()
    assert services.send_delivery(delivery.pk) == DeliveryStatus.PENDING
    assert fake_receiver.rejected and not fake_receiver.verified
    delivery.refresh_from_db()
    assert delivery.last_status_code == 400 and delivery.last_error == "HTTP 400"  # the answer's body is not kept


def test_transcript_only_for_endpoints_that_ask(org, workflow, patient, fake_receiver):
    ep = endpoint_for(org, fake_receiver, include_transcript=True)
    call = factories.make_call(
        org, workflow, patient, status=CallStatus.IN_PROGRESS,
        transcript=[{"role": "assistant", "text": "Hello Ada", "at": "2026-05-04T10:00:00+00:00", "seq": 3}],
    )
    transition(call.pk, CallStatus.COMPLETED)
    delivery = WebhookDelivery.objects.get(endpoint=ep)
    assert "transcript" not in delivery.payload  # the outbox row holds no transcript
    services.send_delivery(delivery.pk)
    [got] = fake_receiver.verified
    assert got["event"]["data"]["transcript"] == [
        {"role": "assistant", "text": "Hello Ada", "at": "2026-05-04T10:00:00+00:00"}
    ]


def test_500_then_200_is_delivered_on_retry_with_the_same_webhook_id(org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    fake_receiver.fail_next("POST /hooks/myrobot", 500)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        ended_call(org, workflow, patient)
        delivery = WebhookDelivery.objects.get()
        assert services.send_delivery(delivery.pk) == DeliveryStatus.PENDING
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.last_status_code) == (1, 500)
        wait = delivery.next_attempt_at - timezone.now()
        assert timedelta(0) < wait <= timedelta(minutes=2)  # the first retry comes within two minutes

        assert services.sweep(send_inline=True) == 0  # not due yet
        clock.shift(wait)
        assert services.sweep(send_inline=True) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 204)
    first, second = fake_receiver.requests_to("POST /hooks/myrobot")
    ids = [{k.lower(): v for k, v in r["headers"].items()}["webhook-id"] for r in (first, second)]
    assert ids == [delivery.message_id, delivery.message_id]
    assert [v["id"] for v in fake_receiver.verified] == [delivery.message_id]


def test_backoff_spans_about_a_day_then_gives_up(org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    fake_receiver.fail_next("POST /hooks/myrobot", 503, times=100)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        ended_call(org, workflow, patient)
        delivery = WebhookDelivery.objects.get()
        services.send_delivery(delivery.pk)
        for _ in range(sending.MAX_ATTEMPTS - 1):
            delivery.refresh_from_db()
            clock.move_to(delivery.next_attempt_at)
            services.sweep(send_inline=True)
        delivery.refresh_from_db()
        span = timezone.now() - start
    assert delivery.status == "failed" and delivery.attempts == sending.MAX_ATTEMPTS
    assert timedelta(hours=20) <= span <= timedelta(hours=30)


def test_410_disables_the_endpoint(org, workflow, patient, fake_receiver):
    ep = endpoint_for(org, fake_receiver)
    fake_receiver.fail_next("POST /hooks/myrobot", 410, body="gone")
    ended_call(org, workflow, patient)
    ended_call(org, workflow, factories.make_patient(org))
    first, second = WebhookDelivery.objects.order_by("pk")

    assert services.send_delivery(first.pk) == DeliveryStatus.FAILED
    ep.refresh_from_db()
    assert not ep.is_active and "410" in ep.disabled_reason
    second.refresh_from_db()
    assert second.status == "failed"  # nothing more goes to a receiver that is gone
    ended_call(org, workflow, factories.make_patient(org))
    assert WebhookDelivery.objects.count() == 2
    assert len(fake_receiver.requests) == 1


def test_a_hanging_receiver_times_out_and_is_retried(org, workflow, patient, fake_receiver, settings):
    settings.WEBHOOK_TIMEOUT_S = 0.3
    fake_receiver.hang_s = 2
    endpoint_for(org, fake_receiver)
    fake_receiver.hang_next("POST /hooks/myrobot")
    ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()
    assert services.send_delivery(delivery.pk) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert delivery.last_status_code is None and "timed out" in delivery.last_error.lower()
    assert delivery.next_attempt_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_send_lost_after_commit_is_delivered_by_the_sweep(org, workflow, patient, fake_receiver, sends_nowhere):
    """The process that committed the transition never sends (its task is enqueued
    where no worker takes it: a worker killed, a broker restarted): the periodic
    sweep finds the outbox row and delivers it."""
    endpoint_for(org, fake_receiver)
    ended_call(org, workflow, patient)  # its send goes to the broker, and no worker takes it
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 0
    assert fake_receiver.requests == []

    from django.core.management import call_command

    call_command("send_webhooks")  # what Celery beat's sweep (or `send_webhooks --loop`) runs
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert [v["id"] for v in fake_receiver.verified] == [delivery.message_id]


def test_sweep_skips_a_delivery_another_sender_holds(org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert services.sweep(send_inline=True) == 0
    assert services.send_delivery(delivery.pk) is None
    assert fake_receiver.requests == []


def test_campaign_finished_is_queued_and_signed(org, fake_receiver):
    endpoint_for(org, fake_receiver, events=["campaign.finished"])
    [delivery] = services.campaign_finished(
        organization_id=org.pk, campaign_id=7, name="Flu shots", status="completed",
        counts={"pending": 0, "active": 0, "reached": 3, "unreachable": 1, "failed": 0, "skipped": 1, "canceled": 0},
        results={"confirmed": 2, "declined": 1},
    )
    assert services.campaign_finished(organization_id=org.pk, campaign_id=7) == []  # once per campaign
    services.send_delivery(delivery.pk)
    [got] = fake_receiver.verified
    assert got["event"]["type"] == "campaign.finished"
    assert got["event"]["data"]["campaign_id"] == "7"
    assert got["event"]["data"]["counts"]["reached"] == 3


# --- endpoints: URL rule, admin and roles ----------------------------------------------


def test_endpoint_url_must_be_public_https_and_loopback_only_with_the_allowance(org, settings, stub_dns):
    from django.core.exceptions import ValidationError

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    WebhookEndpoint(organization=org, url="https://ehr.example.org/hook", events=["call.ended"]).full_clean()
    for url in ("http://ehr.example.org/hook", "http://127.0.0.1:9000/hook", "http://localhost/hook",
                "https://127.0.0.1/hook"):
        with pytest.raises(ValidationError):
            WebhookEndpoint(organization=org, url=url, events=["call.ended"]).full_clean()
    settings.WEBHOOK_ALLOW_LOOPBACK = True  # a receiver on the developer's machine (DEBUG)
    for url in ("http://127.0.0.1:9000/hook", "http://localhost/hook"):
        WebhookEndpoint(organization=org, url=url, events=["call.ended"]).full_clean()
    with pytest.raises(ValidationError):  # plain http to a public host, never
        WebhookEndpoint(organization=org, url="http://ehr.example.org/hook", events=["call.ended"]).full_clean()
    with pytest.raises(ValidationError):
        WebhookEndpoint(organization=org, url="https://x.example.org", events=["call.started"]).full_clean()


def test_admin_shows_the_secret_once(client, org):
    admin_user = factories.make_user(org=org, role="admin")
    client.force_login(admin_user)
    response = client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"organization": org.pk, "url": "https://ehr.example.org/hook", "events": ["call.ended"], "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    ep = WebhookEndpoint.objects.get()
    assert ep.secret.startswith("whsec_") and ep.secret in response.content.decode()
    change = client.get(f"/admin/webhooks/webhookendpoint/{ep.pk}/change/")
    assert change.status_code == 200 and ep.secret not in change.content.decode()
    listing = client.get("/admin/webhooks/webhookendpoint/")
    assert ep.secret not in listing.content.decode()


@pytest.mark.parametrize("role", ["viewer", "staff"])
def test_viewer_and_staff_cannot_see_endpoints_or_secrets(client, org, role):
    ep = endpoint_for(org, url="https://ehr.example.org/hook")
    client.force_login(factories.make_user(org=org, role=role))
    for url in (
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{ep.pk}/change/",
        "/admin/webhooks/webhookdelivery/",
    ):
        response = client.get(url)
        assert response.status_code in (302, 403, 404), url
        assert ep.secret not in response.content.decode()
    index = client.get("/admin/").content.decode()
    assert "Webhook endpoints" not in index and ep.secret not in index


def test_admin_redeliver_sends_again_with_the_same_id(client, org, workflow, patient, fake_receiver):
    endpoint_for(org, fake_receiver)
    ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    client.force_login(factories.make_user(org=org, role="admin"))
    with pytest.MonkeyPatch.context():
        response = client.post(
            "/admin/webhooks/webhookdelivery/",
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    services.sweep(send_inline=True)
    assert [v["id"] for v in fake_receiver.verified] == [delivery.message_id] * 2


# --- GET /api/webhooks/deliveries ------------------------------------------------------


def test_api_lists_the_organisations_deliveries(client, org, other_org, workflow, patient):
    endpoint_for(org, url="https://ehr.example.org/a")
    endpoint_for(other_org, url="https://other.example.org/a")
    call = ended_call(org, workflow, patient)
    other_wf = factories.make_workflow(other_org)
    ended_call(other_org, other_wf, factories.make_patient(other_org))
    _key, raw = ApiKey.generate(org)

    body = client.get("/api/webhooks/deliveries", **auth(raw)).json()
    assert body["count"] == 1
    [item] = body["items"]
    assert item["data"]["session_id"] == str(call.pk)
    assert item["status"] == "pending" and item["webhook_id"].startswith("msg_")
    assert client.get("/api/webhooks/deliveries?status=delivered", **auth(raw)).json()["count"] == 0
    assert client.get(f"/api/webhooks/deliveries?session_id={call.pk}", **auth(raw)).json()["count"] == 1
    bad = client.get("/api/webhooks/deliveries?state=pending", **auth(raw))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "state"


# --- with a real worker (PostgreSQL + Redis) ------------------------------------------


@pytest.fixture
def webhooks_to_worker(settings, celery_worker):
    """Route webhook sends to the test worker's queue (before the live server forks)."""
    settings.WEBHOOK_QUEUE = celery_worker.queue_name
    return celery_worker


@pytest.mark.worker
def test_a_worker_on_the_webhooks_queue_delivers_a_canceled_call(
    settings, fake_daily, fake_runner, fake_receiver, webhooks_to_worker, asgi_live_server
):
    """Through the real stack: the API cancels, the server commits the outbox, the
    worker takes the send from the webhooks queue, the receiver verifies it."""
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    patient = factories.make_patient(org)
    endpoint_for(org, fake_receiver)
    _key, raw = ApiKey.generate(org)
    headers = {"Authorization": f"Bearer {raw}"}
    call = factories.make_call(org, workflow, patient, status=CallStatus.RINGING)

    request = urllib.request.Request(
        f"{asgi_live_server.url}/api/calls/{call.pk}/cancel", headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    deadline = time.monotonic() + 20
    while not fake_receiver.verified and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the sentinel: the receiver's verified delivery
    [got] = fake_receiver.verified
    assert got["event"]["data"] == {**got["event"]["data"], "session_id": str(call.pk), "status": "canceled"}
    delivery = WebhookDelivery.objects.get()
    assert got["id"] == delivery.message_id


@pytest.mark.django_db(transaction=True)
def test_a_hanging_receiver_does_not_hold_up_the_request_that_ended_the_call(client, settings, fake_receiver):
    """Without a broker the send runs on a background thread: the API answers the
    cancel while the receiver is still hanging on the webhook."""
    settings.WEBHOOK_TIMEOUT_S = 1
    fake_receiver.hang_s = 3
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    call = factories.make_call(org, workflow, factories.make_patient(org), status=CallStatus.RINGING)
    endpoint_for(org, fake_receiver)
    fake_receiver.hang_next("POST /hooks/myrobot")
    _key, raw = ApiKey.generate(org)

    response = client.post(f"/api/calls/{call.pk}/cancel", **auth(raw))
    assert response.status_code == 200

    deadline = time.monotonic() + 10
    while not fake_receiver.requests and time.monotonic() < deadline:
        time.sleep(0.02)  # the sentinel: the receiver got the webhook (and hangs)
    assert fake_receiver.requests
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 0  # the request above did not wait for the send to finish
    while WebhookDelivery.objects.get().attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # let the background send time out before the database is torn down
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.status == "pending" and "timed out" in delivery.last_error.lower()


def test_what_is_settled_after_the_transition_goes_out_with_the_send(org, workflow, patient, fake_receiver):
    """A late outcome (or a follow-up attempt's time) is read from the call when the webhook is sent."""
    endpoint_for(org, fake_receiver)
    call = ended_call(org, workflow, patient)
    delivery = WebhookDelivery.objects.get()
    assert delivery.payload["outcome"] is None
    type(call).objects.filter(pk=call.pk).update(outcome={"result": "confirmed", "notes": "", "data": {}})
    services.send_delivery(delivery.pk)
    [got] = fake_receiver.verified
    assert got["event"]["data"]["outcome"]["result"] == "confirmed"
    assert got["event"]["data"]["status"] == "completed"


def test_a_sweep_sends_only_a_few_deliveries_per_endpoint(org, settings):
    settings.WEBHOOK_SWEEP_PER_ENDPOINT = 3
    dead = endpoint_for(org, url="https://dead.example.org/hook")
    alive = endpoint_for(org, url="https://alive.example.org/hook", events=["campaign.finished"])
    for n in range(6):
        services.enqueue_event(org.pk, "call.ended", f"call.ended:dead-{n}", {})
    for n in range(2):
        services.enqueue_event(org.pk, "campaign.finished", f"campaign.finished:{n}", {})
    due = services.due_deliveries()
    by_endpoint = {ep: WebhookDelivery.objects.filter(pk__in=due, endpoint=ep).count() for ep in (dead, alive)}
    assert by_endpoint == {dead: 3, alive: 2}


@pytest.mark.django_db(transaction=True)
def test_a_failing_endpoint_gets_new_events_through_the_sweep(fake_receiver):
    """The healthy endpoint's webhook goes out when the call ends; the failing one's waits for the sweep."""
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    failing = endpoint_for(org, fake_receiver, url=fake_receiver.hook_url + "?a=failing")
    healthy = endpoint_for(org, url=fake_receiver.hook_url + "?b=healthy")
    WebhookEndpoint.objects.filter(pk=healthy.pk).update(secret=failing.secret)
    WebhookEndpoint.objects.filter(pk=failing.pk).update(failing_since=timezone.now())

    ended_call(org, workflow, factories.make_patient(org))

    deadline = time.monotonic() + 10
    while not fake_receiver.verified and time.monotonic() < deadline:
        time.sleep(0.02)  # the sentinel: the healthy endpoint's delivery arrived
    sent_first = WebhookDelivery.objects.get(endpoint=healthy)
    waiting = WebhookDelivery.objects.get(endpoint=failing)
    assert [v["id"] for v in fake_receiver.verified] == [sent_first.message_id]
    assert (waiting.attempts, waiting.claimed_until, waiting.status) == (0, None, "pending")

    services.sweep(send_inline=True)
    waiting.refresh_from_db()
    assert waiting.status == "delivered"
    assert WebhookEndpoint.objects.get(pk=failing.pk).failing_since is None  # a 2xx clears the mark


@pytest.mark.worker
def test_a_worker_killed_in_the_middle_of_a_send_is_covered_by_the_sweep(
    settings, fake_receiver, webhooks_to_worker
):
    """The worker takes the delivery and is killed (SIGKILL) while the receiver is
    still reading it: the row stays pending, and once the sender's claim has expired
    the sweep delivers it, with the same webhook-id."""
    fake_receiver.hang_s = 30
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    endpoint_for(org, fake_receiver)
    fake_receiver.hang_next("POST /hooks/myrobot")
    ended_call(org, workflow, factories.make_patient(org))  # committed: the send goes to the worker

    deadline = time.monotonic() + 20
    while not fake_receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)  # the sentinel: the worker's request reached the receiver
    assert fake_receiver.requests
    webhooks_to_worker.process.kill()
    webhooks_to_worker.process.wait(10)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 0 and delivery.claimed_until is not None
    assert services.sweep(send_inline=True) == 0  # the dead worker's claim still holds
    with time_machine.travel(delivery.claimed_until + timedelta(seconds=1), tick=False):
        assert services.sweep(send_inline=True) == 1
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert [v["id"] for v in fake_receiver.verified] == [delivery.message_id]


def test_an_endpoint_url_typed_without_a_scheme_means_https():
    from webhooks.admin import WebhookEndpointForm

    assert WebhookEndpointForm.base_fields["url"].clean("hooks.example.org/myrobot") == "https://hooks.example.org/myrobot"
