"""The organisation's admin page, extended: an E.164 dial-out caller id is turned
into Daily's phone-number id when it is saved (``calls.caller_ids``).

``organizations`` must not reach Daily (dependencies point one way), so the
form is extended here and the admin re-registered, as ``admin_patients`` does.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from organizations.admin import OrganizationAdmin, OrganizationForm
from organizations.models import Organization

from . import caller_ids


class CallerIdOrganizationForm(OrganizationForm):
    def clean_dialout_caller_id(self):
        value = (self.cleaned_data.get("dialout_caller_id") or "").strip()
        if not value or value == self.initial.get("dialout_caller_id"):
            return value
        try:
            return caller_ids.resolve_caller_id(value)
        except caller_ids.CallerIdRefused as exc:
            raise forms.ValidationError(str(exc)) from None


class CallerIdOrganizationAdmin(OrganizationAdmin):
    form = CallerIdOrganizationForm


admin.site.unregister(Organization)
admin.site.register(Organization, CallerIdOrganizationAdmin)
