"""Celery: the campaigns' release step, run by beat every few seconds."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def release_campaign_calls() -> int:
    """Release held campaign calls at each campaign's pace; finish campaigns that are done."""
    return services.release_due().released
