"""Webhook endpoints and deliveries in the admin: the organisation's admins only.

The endpoint's secret is shown once, on the page after it is created (or
rotated: ``organizations.secret_page``, never in the messages cookie); no page
shows it again.
"""

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.urls import reverse

from audit.models import AuditAction
from audit.services import record_request
from organizations import access
from organizations.admin_scoping import OrgScopedAdmin
from organizations.secret_page import show_once

from . import services
from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent, new_secret


def _https_by_default(field, **kwargs):
    """The form's own fields, as the admin builds them (OrgScopedAdmin.formfield_overrides)."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple, initial=list(WebhookEvent.values)
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["organization", "url", "description", "events", "is_active", "include_transcript"]
        formfield_callback = _https_by_default


def _show_secrets_once(request, endpoints, verb: str):
    """The page with the endpoints' signing secrets (never the ``messages`` cookie)."""
    return show_once(
        request, title=f"{verb} signing secret",
        warning="Copy the secret into your receiver now: it is shown only on this page, once.",
        secrets=[(endpoint.url, endpoint.secret) for endpoint in endpoints],
        next_url=reverse("admin:webhooks_webhookendpoint_changelist"),
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(OrgScopedAdmin):
    form = WebhookEndpointForm
    read_right = access.MANAGE
    write_right = access.MANAGE
    list_display = [
        "url", "organization", "events_display", "is_active", "include_transcript", "failing_since", "disabled_reason",
    ]
    list_filter = ["is_active", ("organization", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organization"]
    readonly_fields = ["disabled_reason", "failing_since", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    @admin.display(description="Events")
    def events_display(self, obj):
        return ", ".join(obj.events or [])

    def save_model(self, request, obj, form, change):
        if obj.is_active:
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        return _show_secrets_once(request, [obj], "The")

    @admin.action(description="Rotate the signing secret of selected endpoints")
    def rotate_secret(self, request, queryset):
        rotated = []
        for endpoint in queryset:
            if not access.has_right(request.user, access.MANAGE, endpoint.organization_id):
                continue
            endpoint.secret = new_secret()
            endpoint.save(update_fields=["secret", "updated_at"])
            rotated.append(endpoint)
        return _show_secrets_once(request, rotated, "New")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(OrgScopedAdmin):
    read_right = access.MANAGE
    write_right = access.MANAGE
    list_display = [
        "created_at", "event_type", "endpoint", "status", "attempts", "last_status_code", "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    date_hierarchy = "created_at"
    fields = [
        "organization", "endpoint", "event_type", "event_key", "message_id", "status", "attempts",
        "last_attempt_at", "last_status_code", "last_error", "next_attempt_at", "delivered_at",
        "created_at", "payload",
    ]
    readonly_fields = fields
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request):
        return access.has_right(request.user, access.MANAGE)

    @admin.action(description="Redeliver selected deliveries (same webhook-id)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        count = 0
        for delivery in queryset:
            if access.has_right(request.user, access.MANAGE, delivery.organization_id):
                services.redeliver(delivery)
                # Audited: with "include transcript" switched on since, a redelivery sends patient data.
                record_request(request, AuditAction.REDELIVER_WEBHOOK, delivery, via="admin")
                count += 1
        self.message_user(request, f"Queued {count} delivery(ies) again.", messages.SUCCESS)
