from django.contrib import admin

from organizations import access
from organizations.admin_scoping import OrgScopedAdmin

from . import display
from .models import Patient

PHI_FIELDS = ("first_name", "last_name", "date_of_birth", "phone", "data")


@admin.register(Patient)
class PatientAdmin(OrgScopedAdmin):
    write_right = access.WRITE_PATIENTS
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "consent_to_call", "do_not_call", "preferred_language"]
    search_fields = ["first_name", "last_name", "external_id", "phone"]
    list_select_related = ["organization"]
    fieldsets = [
        (None, {"fields": ["organization", "external_id", "first_name", "last_name", "date_of_birth"]}),
        ("Contact", {"fields": ["phone", "preferred_language", "timezone", "consent_to_call", "do_not_call"]}),
        ("For the bot", {"fields": ["data"]}),
    ]

    def action_label(self, obj) -> str:
        return f"patient {obj.external_id or obj.pk}"

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
        return super().change_view(request, object_id, form_url, extra_context)

    def get_list_display(self, request):
        """Names and phones in clear only where the user's role allows (not for viewers)."""

        def name(obj):
            return obj.full_name if self._sees_phi(request, obj) else obj.masked_name

        def phone(obj):
            return obj.phone if self._sees_phi(request, obj) else obj.masked_phone

        name.short_description, name.admin_order_field = "Name", "last_name"
        phone.short_description = "Phone"
        return [name, "external_id", phone, "organization", "consent_to_call", "do_not_call"]

    def get_search_fields(self, request):
        # Viewers may not find patients by the details they cannot see.
        if access.org_ids_with(request.user, access.WRITE_PATIENTS):
            return self.search_fields
        return ["external_id"]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self._sees_phi(request, obj):
            return [
                (None, {"fields": ["organization", "external_id", "masked_name", "masked_phone"]}),
                ("Contact", {"fields": ["preferred_language", "timezone", "consent_to_call", "do_not_call"]}),
            ]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not self._sees_phi(request, obj):
            return ["masked_name", "masked_phone"]
        return []
