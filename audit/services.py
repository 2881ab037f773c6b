"""Write the audit trail: `record()` for a known actor, `record_request()` from a request.

Callers pass objects or ids; only the organisation id, the object's type and
primary key, and the actor are stored.
"""

from __future__ import annotations

import logging

from .models import AuditAction, AuditEvent

log = logging.getLogger(__name__)

ACTIONS = frozenset(AuditAction.values)


def _object_type(obj) -> str:
    return obj._meta.label_lower


def record(
    action: str,
    obj=None,
    *,
    organization_id=None,
    object_type: str | None = None,
    object_id=None,
    user=None,
    api_key=None,
    via: str = "",
) -> AuditEvent:
    """One audit row. `obj` (a model instance with `organization_id`) supplies
    the organisation, type and id unless they are given."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if obj is not None:
        object_type = object_type or _object_type(obj)
        object_id = obj.pk if object_id is None else object_id
        if organization_id is None:
            organization_id = getattr(obj, "organization_id", None)
    if organization_id is None:
        raise ValueError("an audit event needs an organisation")
    user, actor = _actor(user, api_key)
    return AuditEvent.objects.create(
        organization_id=organization_id,
        user=user,
        api_key=api_key,
        actor=actor,
        action=action,
        object_type=(object_type or "")[:64],
        object_id="" if object_id is None else str(object_id)[:64],
        via=via[:16],
    )


def record_many(action: str, objs, *, user=None, api_key=None, via: str = "") -> None:
    """One audit row per object (model instances with ``organization_id``), in one query."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    user, actor = _actor(user, api_key)
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                organization_id=obj.organization_id, user=user, api_key=api_key, actor=actor, action=action,
                object_type=_object_type(obj)[:64], object_id=str(obj.pk)[:64], via=via[:16],
            )
            for obj in objs
        ],
        batch_size=1000,
    )


def _actor(user, api_key) -> tuple:
    """(the user, or None when anonymous; what the row calls the actor)."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    if user is not None:
        return user, user.get_username()[:150]
    if api_key is not None:
        return None, f"key {api_key.prefix}"[:150]
    return None, ""


def record_request(request, action: str, obj=None, *, via: str = "", **kwargs) -> AuditEvent:
    """As `record`, the actor being the request's API key (REST API) or user (pages)."""
    api_key = getattr(request, "api_key", None)
    user = None if api_key is not None else getattr(request, "user", None)
    return record(action, obj, user=user, api_key=api_key, via=via or ("api" if api_key else "admin"), **kwargs)
