"""ModelAdmin base that scopes every admin page to the user's organisations.

Rights come from the membership role (organizations.access), checked on each
request; members need no Django groups or model permissions, only is_staff.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.views.main import ChangeList
from django.db import models

from . import access
from .models import Organization


class DeclaredFiltersChangeList(ChangeList):
    """A list page that takes only the filters its admin declares.

    Django's admin applies any other ``field__lookup=value`` of the URL to the
    query, which lets a user probe fields the page does not show (a secret by
    ``?dialin_webhook_secret__regex=^a``, a name by ``?first_name=Ada``). The
    declared list filters and the date hierarchy consume their own parameters;
    anything left over is refused (400) whatever its value.
    """

    def get_filters(self, request):
        filter_specs, has_filters, remaining, may_have_duplicates, has_active = super().get_filters(request)
        allowed = set()
        if self.date_hierarchy and any(
            f"{self.date_hierarchy}__{part}" in self.params for part in ("year", "month", "day")
        ):
            allowed = {f"{self.date_hierarchy}__gte", f"{self.date_hierarchy}__lt"}
        undeclared = sorted(set(remaining) - allowed)
        if undeclared:
            raise DisallowedModelAdminLookup(f"Filtering by {', '.join(undeclared)} is not allowed")
        return filter_specs, has_filters, remaining, may_have_duplicates, has_active


class OrgScopedAdmin(admin.ModelAdmin):
    #: path from the model to its organisation id, e.g. "organization_id"
    org_field = "organization"
    #: right needed to add/change/delete
    write_right = access.MANAGE
    #: right needed to see the objects
    read_right = access.READ
    # A URL typed without a scheme means https (Django 6's default; webhook
    # endpoints must be HTTPS in production).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def action_label(self, obj) -> str:
        """What the row's checkbox is called for screen readers: ``str(obj)`` by
        default; admins of objects that name a patient say something neither
        masked nor clear, so a page never shows one person two ways."""
        return str(obj)

    def action_checkbox(self, obj):
        attrs = {"class": "action-select", "aria-label": f"Select this row for an action - {self.action_label(obj)}"}
        return forms.CheckboxInput(attrs, lambda value: False).render(helpers.ACTION_CHECKBOX_NAME, str(obj.pk))

    def get_changelist(self, request, **kwargs):
        return DeclaredFiltersChangeList

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
