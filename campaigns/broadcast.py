"""What campaign pages hear: ``{"type": "campaign.update", "campaign": {...}}`` on ``campaign.<id>``.

The payload carries counts and outcome results only (no patient data), so it
is the same for every role.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import selectors
from .models import Campaign

log = logging.getLogger(__name__)


def campaign_group(campaign_id) -> str:
    return f"campaign.{campaign_id}"


def serialize_campaign(campaign: Campaign) -> dict:
    counts, results = selectors.progress(campaign)
    total = sum(counts.values())
    done = total - counts["pending"] - counts["active"]
    return {
        "id": campaign.pk,
        "organization_id": campaign.organization_id,
        "name": campaign.name,
        "status": campaign.status,
        "status_display": campaign.get_status_display(),
        "pace_per_minute": campaign.pace_per_minute,
        "counts": counts,
        "results": results,
        "total": total,
        "done": done,
        "percent": round(100 * done / total) if total else 0,
    }


async def send_campaign_update(payload: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(campaign_group(payload["id"]), {"type": "campaign.update", "campaign": payload})


def broadcast_campaign_sync(campaign_id) -> None:
    """From sync code (services, the dispatcher): a page missing an update must never break a campaign."""
    try:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is not None:
            async_to_sync(send_campaign_update)(serialize_campaign(campaign))
    except Exception:  # noqa: BLE001
        log.exception("broadcast of campaign %s failed", campaign_id)
