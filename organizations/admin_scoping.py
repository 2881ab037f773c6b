"""ModelAdmin base that scopes every admin page to the user's organisations.

Rights come from the membership role (organizations.access), checked on each
request; members need no Django groups or model permissions, only is_staff.
"""

from django.contrib import admin

from . import access
from .models import Organization


class OrgScopedAdmin(admin.ModelAdmin):
    #: path from the model to its organisation id, e.g. "organization_id"
    org_field = "organization"
    #: right needed to add/change/delete
    write_right = access.MANAGE
    #: right needed to see the objects
    read_right = access.READ

    def org_id_of(self, obj):
        value = obj
        for part in self.org_field.split("__"):
            value = getattr(value, part)
        return value.pk if hasattr(value, "pk") else value

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.org_field}__in": access.org_ids_with(request.user, self.read_right)})

    def has_module_permission(self, request):
        return access.has_right(request.user, self.read_right)

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return access.has_right(request.user, self.read_right)
        return access.has_right(request.user, self.read_right, self.org_id_of(obj))

    def has_add_permission(self, request):
        return access.has_right(request.user, self.write_right)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return access.has_right(request.user, self.write_right)
        return access.has_right(request.user, self.write_right, self.org_id_of(obj))

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Organization and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.filter(
                pk__in=access.org_ids_with(request.user, self.write_right)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
