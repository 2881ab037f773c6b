from django.contrib import admin

from audit.models import AuditAction
from audit.services import record_request
from organizations import access
from organizations.admin_scoping import OrgScopedAdmin

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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and getattr(response, "status_code", None) == 200:
            obj = self.get_object(request, object_id)
            if obj is not None:
                record_request(request, AuditAction.VIEW_PATIENT, obj, via="admin")
        return response

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        record_request(request, AuditAction.CHANGE_PATIENT, obj, via="admin")

    def delete_model(self, request, obj):
        record_request(request, AuditAction.CHANGE_PATIENT, obj, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            record_request(request, AuditAction.CHANGE_PATIENT, obj, via="admin")
        super().delete_queryset(request, queryset)

    def _sees_phi(self, request, obj):
        return access.sees_phi(request.user, obj.organization_id)

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
