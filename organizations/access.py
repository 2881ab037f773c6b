"""Who may do what, from organisation membership roles (docs/architecture.md, "Roles").

Every page, admin and socket asks here; a member needs no Django group or model
permission. A superuser sees all organisations as an admin.
"""

from __future__ import annotations

from .models import Organization, OrganizationMembership, Role

READ = "read"
WRITE_PATIENTS = "write_patients"
PLACE_CALLS = "place_calls"
WRITE_WORKFLOWS = "write_workflows"
MANAGE = "manage"

RIGHTS = {
    Role.ADMIN: {READ, WRITE_PATIENTS, PLACE_CALLS, WRITE_WORKFLOWS, MANAGE},
    Role.STAFF: {READ, WRITE_PATIENTS, PLACE_CALLS},
    Role.VIEWER: {READ},
}


def roles_for(user) -> dict[int, str]:
    """{organization_id: role} for the user's active organisations (cached on the user)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return {}
    cached = getattr(user, "_myrobot_roles", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        roles = {pk: Role.ADMIN for pk in Organization.objects.values_list("pk", flat=True)}
    else:
        roles = dict(
            OrganizationMembership.objects.filter(user=user, organization__is_active=True).values_list(
                "organization_id", "role"
            )
        )
    user._myrobot_roles = roles
    return roles


def org_ids_with(user, right: str) -> list[int]:
    return [org_id for org_id, role in roles_for(user).items() if right in RIGHTS.get(role, set())]


def has_right(user, right: str, organization_id=None) -> bool:
    """True when the user holds `right` in that organisation (or in any, when None)."""
    if organization_id is None:
        return bool(org_ids_with(user, right))
    role = roles_for(user).get(organization_id)
    return role is not None and right in RIGHTS.get(role, set())


def role_in(user, organization_id) -> str | None:
    return roles_for(user).get(organization_id)


def sees_phi(user, organization_id) -> bool:
    """Viewers see names and phones masked, and no transcripts."""
    role = role_in(user, organization_id)
    return role in (Role.ADMIN, Role.STAFF)
