"""The audit trail in the admin: read-only, for the organisation's admins.

``audit`` sits below every app and imports none of ours, so its admin (which
needs the role checks) is registered here, beside the other admin pages that
need ``organizations.access``.
"""

from django.contrib import admin

from audit.models import AuditEvent

from . import access, timefmt
from .admin_scoping import OrgScopedAdmin


class AuditUserFilter(admin.RelatedOnlyFieldListFilter):
    """Only the users who appear in the rows the viewer may see."""


@admin.register(AuditEvent)
class AuditEventAdmin(OrgScopedAdmin):
    read_right = access.MANAGE
    list_display = ["at_local", "actor", "action", "object_type", "object_id", "via", "organization"]
    list_filter = [("user", AuditUserFilter), "action", ("at", admin.DateFieldListFilter), "via"]
    date_hierarchy = "at"
    list_select_related = ["organization"]
    fields = ["at", "organization", "actor", "user", "api_key", "action", "object_type", "object_id", "via"]
    readonly_fields = fields

    @admin.display(description=f"At ({timefmt.CLINIC_TIME})", ordering="at")
    def at_local(self, obj):
        return timefmt.show(obj.at, obj.organization.timezone if obj.organization_id else "", seconds=True)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
