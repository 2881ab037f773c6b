"""Open browser sockets follow membership changes within moments (docs/architecture.md, "Security rules").

A socket decides what its user may hear when it connects. When a membership
is removed or its role changed, a user is deactivated (or loses ``is_staff``),
or an organisation is switched off, the user's open sockets are told
(``access.changed`` on the channel-layer group ``user.<id>`` or ``org.<id>``)
once the change is committed; each re-reads the user's roles and is reshaped
or closed (calls.consumers).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from organizations.models import Organization, OrganizationMembership

from .broadcast import org_group

log = logging.getLogger(__name__)

ACCESS_CHANGED = {"type": "access.changed"}


def user_group(user_id) -> str:
    return f"user.{user_id}"


def _send_on_commit(group: str) -> None:
    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, ACCESS_CHANGED)
        except Exception:  # noqa: BLE001 - the change is saved; sockets re-check on reconnect
            log.exception("could not tell open sockets of %s about an access change", group)

    transaction.on_commit(send)


def _membership_changed(sender, instance, **kwargs):
    _send_on_commit(user_group(instance.user_id))


def _user_changed(sender, instance, created=False, **kwargs):
    if not created:
        _send_on_commit(user_group(instance.pk))


def _organization_changed(sender, instance, created=False, **kwargs):
    if not created:
        _send_on_commit(org_group(instance.pk))


def connect_signals() -> None:
    post_save.connect(_membership_changed, sender=OrganizationMembership, dispatch_uid="access-membership-save")
    post_delete.connect(_membership_changed, sender=OrganizationMembership, dispatch_uid="access-membership-del")
    User = get_user_model()
    post_save.connect(_user_changed, sender=User, dispatch_uid="access-user-save")
    post_delete.connect(_user_changed, sender=User, dispatch_uid="access-user-delete")
    post_save.connect(_organization_changed, sender=Organization, dispatch_uid="access-org-save")
