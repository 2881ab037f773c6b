"""A plain `celery -A myrobot worker` (no -Q) consumes every queue the app sends to."""

from __future__ import annotations

import time

import pytest

from calls.models import CallStatus
from calls.state import transition
from tests import factories
from webhooks.models import WebhookEndpoint


def test_every_queue_the_app_sends_to_is_declared(settings):
    from myrobot.celery import app

    declared = set(app.amqp.queues)
    assert {settings.CELERY_TASK_DEFAULT_QUEUE, settings.WEBHOOK_QUEUE} <= declared
    for route in settings.CELERY_TASK_ROUTES.values():
        assert route["queue"] in declared


@pytest.mark.worker
def test_a_plain_worker_sends_webhooks(settings, fake_receiver, plain_celery_worker):
    """The worker was started without -Q, as the README says is fine: the
    call.ended webhook (on its own queue) still reaches the receiver."""
    org = factories.make_org()
    workflow = factories.make_workflow(org)
    patient = factories.make_patient(org)
    endpoint = WebhookEndpoint.objects.create(organization=org, url=fake_receiver.hook_url, events=["call.ended"])
    fake_receiver.secret = endpoint.secret
    call = factories.make_call(org, workflow, patient, status=CallStatus.IN_PROGRESS)

    assert transition(call.pk, CallStatus.COMPLETED, reason="completed")

    deadline = time.monotonic() + 20
    while not fake_receiver.verified and time.monotonic() < deadline:
        time.sleep(0.05)  # the sentinel: a verified delivery at the receiver
    [got] = fake_receiver.verified
    assert got["event"]["data"]["session_id"] == str(call.pk)
    assert any(f"{plain_celery_worker.queue_name}-webhooks" in line for line in plain_celery_worker.output)
