from django.contrib import admin
from django.utils.html import escape

from audit.models import AuditAction
from audit.services import record_request
from organizations import access
from organizations.admin_scoping import OrgScopedAdmin

from . import display
from .models import Patient

PHI_FIELDS = ("first_name", "last_name", "date_of_birth", "postal_code", "phone", "data")


@admin.register(Patient)
class PatientAdmin(OrgScopedAdmin):
    write_right = access.WRITE_PATIENTS
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "consent_to_call", "do_not_call", "preferred_language"]
    search_fields = ["first_name", "last_name", "external_id", "phone"]
    list_select_related = ["organization"]
    fieldsets = [
        (None, {"fields": ["organization", "external_id", "first_name", "last_name", "date_of_birth", "postal_code"]}),
        ("Contact", {"fields": ["phone", "preferred_language", "timezone", "consent_to_call", "do_not_call",
                                "do_not_call_source", "do_not_call_at"]}),
        ("For the bot", {"fields": ["data"]}),
    ]

    def action_label(self, obj) -> str:
        return f"patient {obj.external_id or obj.pk}"

    def save_model(self, request, obj, form, change):
        if "do_not_call" in form.changed_data and obj.do_not_call:
            obj.do_not_call_source, obj.do_not_call_at = f"admin:{request.user.get_username()}"[:80], None
        super().save_model(request, obj, form, change)
        record_request(request, AuditAction.CHANGE_PATIENT, obj, via="admin")
        # Django's "The patient … was changed" names the object by str(), masked for logs:
        # the message names the patient as this user sees them on the page (message_user).
        request._patient_label = (str(obj), display.label_for(request.user, obj))

    def message_user(self, request, message, *args, **kwargs):
        masked, label = getattr(request, "_patient_label", (None, None))
        if masked and masked != label:
            message = type(message)(str(message).replace(escape(masked), escape(label)).replace(masked, label))
        super().message_user(request, message, *args, **kwargs)

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if obj is not None:
            extra_context.setdefault("title", f"Change history: {display.label_for(request.user, obj)}")
        return super().history_view(request, object_id, extra_context)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:  # what deleting a patient does
            func, name, _label = actions["delete_selected"]
            actions["delete_selected"] = (func, name, "Erase selected patients (their calls stay, without transcripts)")
        return actions

    # Deleting a patient erases them: their calls lose transcripts, outcome notes
    # and the patient's number too (calls.retention, on pre_delete).
    def delete_model(self, request, obj):
        record_request(request, AuditAction.ERASE_PATIENT, obj, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            record_request(request, AuditAction.ERASE_PATIENT, obj, via="admin")
        super().delete_queryset(request, queryset)

    def _sees_phi(self, request, obj):
        return access.sees_phi(request.user, obj.organization_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The heading and breadcrumb name the patient as the user may see them
        (``str(patient)`` stays masked for logs)."""
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra_context.setdefault("subtitle", display.label_for(request.user, obj))
            extra_context.setdefault("patient_label", display.label_for(request.user, obj))
        response = super().change_view(request, object_id, form_url, extra_context)
        if obj is not None and request.method == "GET" and getattr(response, "status_code", None) == 200:
            record_request(request, AuditAction.VIEW_PATIENT, obj, via="admin")
        return response

    def get_list_display(self, request):
        """Names and phones in clear only where the user's role allows (not for viewers)."""

        def name(obj):
            return obj.full_name if self._sees_phi(request, obj) else obj.masked_name

        def phone(obj):
            return obj.phone if self._sees_phi(request, obj) else obj.masked_phone

        name.short_description = "Name"
        if self._sees_phi_everywhere(request):
            # Sorting by a masked column would tell its order (a probe, too).
            name.admin_order_field = "last_name"
        phone.short_description = "Phone"
        return [name, "external_id", phone, "organization", "consent_to_call", "do_not_call"]

    # Found by the details a user sees in clear; by the EHR id everywhere.
    PHI_SEARCH_FIELDS = ["first_name", "last_name", "phone"]

    def _sees_phi_everywhere(self, request) -> bool:
        if request.user.is_superuser:
            return True
        roles = access.roles_for(request.user)
        return all(access.sees_phi(request.user, org_id) for org_id in roles)

    def get_search_fields(self, request):
        if self._sees_phi_everywhere(request) or getattr(request, "_search_phi", False):
            return self.search_fields
        return [f for f in self.search_fields if f not in self.PHI_SEARCH_FIELDS]

    def get_search_results(self, request, queryset, search_term):
        """Name and phone search only in the organisations where the user sees
        them in clear (a user may be staff in one and viewer in another)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term or self._sees_phi_everywhere(request):
            return results, may_have_duplicates
        clear_orgs = [org_id for org_id in access.roles_for(request.user) if access.sees_phi(request.user, org_id)]
        if not clear_orgs:
            return results, may_have_duplicates
        request._search_phi = True
        try:
            in_clear, more_duplicates = super().get_search_results(
                request, queryset.filter(organization_id__in=clear_orgs), search_term
            )
        finally:
            request._search_phi = False
        return results | in_clear, may_have_duplicates or more_duplicates

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self._sees_phi(request, obj):
            return [
                (None, {"fields": ["organization", "external_id", "masked_name", "masked_phone"]}),
                ("Contact", {"fields": ["preferred_language", "timezone", "consent_to_call", "do_not_call",
                                        "do_not_call_source", "do_not_call_at"]}),
            ]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        # Who set do-not-call, and when, is recorded by the server, never typed.
        if obj is not None and not self._sees_phi(request, obj):
            return ["masked_name", "masked_phone", "do_not_call_source", "do_not_call_at"]
        return ["do_not_call_source", "do_not_call_at"]
