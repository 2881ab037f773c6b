"""/ws/campaigns/<id>/ — a campaign page's live progress, for members of its organisation.

Built on the call sockets' machinery (session auth, Origin check, per-role
shaping, a snapshot on connect). It listens to the campaign's group (status
changes, from ``campaigns.broadcast``) and to its organisation's call group:
a ``call.update`` of one of its calls is forwarded, shaped for the recipient's
role, and triggers a fresh ``campaign.update`` (coalesced: at most one
recount per ``RECOUNT_AFTER_S``).
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from calls.broadcast import org_group
from calls.consumers import _BrowserConsumer
from calls.shaping import shape_call_for

from .broadcast import campaign_group, serialize_campaign
from .models import Campaign

RECOUNT_AFTER_S = 0.25


class CampaignConsumer(_BrowserConsumer):
    async def groups_to_join(self):
        self.campaign_id = int(self.scope["url_route"]["kwargs"]["campaign_id"])
        org_id = await database_sync_to_async(
            lambda: Campaign.objects.filter(pk=self.campaign_id).values_list("organization_id", flat=True).first()
        )()
        if org_id is None or org_id not in self.roles:
            return None
        self.organization_id = org_id
        self._recount = None
        return [campaign_group(self.campaign_id), org_group(org_id)]

    def snapshot(self):
        campaign = Campaign.objects.filter(pk=self.campaign_id).first()
        return [] if campaign is None else [{"type": "campaign.update", "campaign": serialize_campaign(campaign)}]

    async def campaign_update(self, message):
        if self.organization_id in self.roles:
            await self.send_json({"type": "campaign.update", "campaign": message["campaign"]})

    async def call_update(self, message):
        call = message["call"]
        if call.get("campaign_id") != self.campaign_id or call["organization_id"] not in self.roles:
            return
        await self.send_json({"type": "call.update", "call": shape_call_for(self.user, call)})
        if self._recount is None or self._recount.done():
            self._recount = asyncio.ensure_future(self._send_recount())

    async def call_event(self, message):
        pass  # the campaign page shows calls' statuses, not their events

    async def _send_recount(self):
        await asyncio.sleep(RECOUNT_AFTER_S)
        for message in await database_sync_to_async(self.snapshot)():
            await self.send_json(message)

    async def disconnect(self, code):
        if getattr(self, "_recount", None) is not None:
            self._recount.cancel()
        await super().disconnect(code)
