"""The FHIR connection, its appointments, its outbox and its tool audit in the admin.

Organisation admins only. The private key is write-only: the form takes a new
one, no page shows the stored one.
"""

from django import forms
from django.contrib import admin, messages
from django.db import models

from organizations import access
from organizations.admin_scoping import OrgScopedAdmin

from . import writeback
from .keys import public_jwk
from .models import FhirAppointment, FhirConnection, FhirWrite, ToolCall


def _https_by_default(field, **kwargs):
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class FhirConnectionForm(forms.ModelForm):
    private_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}), required=False,
        help_text="PEM private key (RS384: RSA; ES384: P-384). Leave empty to keep the stored key.",
    )

    class Meta:
        model = FhirConnection
        fields = [
            "organization", "base_url", "client_id", "algorithm", "key_id", "private_key", "scopes", "workflow",
            "identifier_system", "remind_hours_before", "sync_days_ahead", "allow_writes", "include_transcript",
            "schedule_reference", "tool_webhook_url", "is_active",
        ]
        formfield_callback = _https_by_default

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["private_key"] = ""
        if self.instance.pk is None:
            self.fields["private_key"].required = True

    def clean_private_key(self):
        value = (self.cleaned_data.get("private_key") or "").strip()
        if not value:
            return self.instance.private_key  # unchanged
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError):
            raise forms.ValidationError("Not a PEM private key without a passphrase.")
        return value

    def clean(self):
        cleaned = super().clean()
        key, algorithm = cleaned.get("private_key"), cleaned.get("algorithm")
        if key and algorithm:
            try:
                public_jwk(key, algorithm)
            except ValueError as exc:
                self.add_error("private_key", str(exc))
        return cleaned


@admin.register(FhirConnection)
class FhirConnectionAdmin(OrgScopedAdmin):
    form = FhirConnectionForm
    read_right = access.MANAGE
    write_right = access.MANAGE
    list_display = ["organization", "base_url", "allow_writes", "is_active", "last_sync_at", "last_error"]
    list_select_related = ["organization"]
    readonly_fields = ["last_sync_at", "last_error", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        had_secret = bool(obj.tool_webhook_secret)
        super().save_model(request, obj, form, change)
        if obj.tool_webhook_secret and not had_secret:
            messages.warning(
                request,
                f"Tool webhook signing secret for {obj.tool_webhook_url}: {obj.tool_webhook_secret} — copy it now "
                "into your receiver; it is not shown again.",
            )


class ReadOnlyAdmin(OrgScopedAdmin):
    read_right = access.MANAGE
    write_right = access.MANAGE

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FhirAppointment)
class FhirAppointmentAdmin(ReadOnlyAdmin):
    list_display = ["fhir_id", "start", "status", "patient", "call", "call_result", "not_called_reason"]
    list_filter = ["status", "call_result"]
    list_select_related = ["patient", "call"]
    date_hierarchy = "start"
    fields = ["organization", "connection", "fhir_id", "patient", "patient_fhir_id", "status", "start", "end", "call",
              "call_result", "not_called_reason", "created_at", "synced_at"]
    readonly_fields = fields
    search_fields = ["fhir_id"]


@admin.register(FhirWrite)
class FhirWriteAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "appointment", "status", "attempts", "last_status_code", "next_attempt_at",
                    "done_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["appointment"]
    fields = ["organization", "connection", "appointment", "call", "kind", "status", "attempts", "last_attempt_at",
              "last_status_code", "last_error", "next_attempt_at", "resource_ref", "done_at", "created_at"]
    readonly_fields = fields
    actions = ["send_again"]

    def has_send_again_permission(self, request):
        return access.has_right(request.user, access.MANAGE)

    @admin.action(description="Send selected writes again now", permissions=["send_again"])
    def send_again(self, request, queryset):
        count = 0
        for write in queryset:
            if access.has_right(request.user, access.MANAGE, write.organization_id):
                writeback.retry_now(write)
                count += 1
        self.message_user(request, f"Queued {count} write(s) again.", messages.SUCCESS)


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnlyAdmin):
    list_display = ["at", "tool", "call", "ok", "via", "duration_ms"]
    list_filter = ["tool", "ok", "via"]
    fields = ["organization", "call", "appointment", "tool", "key", "arguments", "result", "ok", "via",
              "duration_ms", "at"]
    readonly_fields = fields
