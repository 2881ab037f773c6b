"""Celery tasks of the webhooks app; they run on `settings.WEBHOOK_QUEUE`."""

from celery import shared_task

from . import services


@shared_task(name="webhooks.tasks.deliver", ignore_result=True)
def deliver(delivery_id: int) -> None:
    """One attempt of one delivery (no-op unless it is due and unclaimed)."""
    services.send_delivery(delivery_id)


@shared_task(name="webhooks.tasks.sweep", ignore_result=True)
def sweep() -> None:
    """Celery beat: send what is due — retries, and rows a crashed process left behind."""
    services.sweep()
