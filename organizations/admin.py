from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.urls import reverse

from . import access
from .forms import LineListField, StaffMemberForm
from .admin_scoping import OrgScopedAdmin
from .models import ApiKey, Organization, OrganizationMembership, Workflow, default_retry_on, default_window_days
from .secret_page import show_once


class OrganizationForm(forms.ModelForm):
    dialin_webhook_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Daily's pinless dial-in HMAC secret (base64). Write-only: leave blank to keep the current one.",
    )
    clear_dialin_webhook_secret = forms.BooleanField(required=False, label="Remove the webhook secret")

    class Meta:
        model = Organization
        fields = ["name", "slug", "timezone", "is_active", "max_concurrent_calls", "dialout_caller_id",
                  "callback_number", "healthcare_calls_per_day", "healthcare_calls_per_week",
                  "express_calls_per_day", "express_calls_per_week", "dialin_webhook_secret",
                  "transcript_retention_days"]

    def clean_dialin_webhook_secret(self):
        value = self.cleaned_data.get("dialin_webhook_secret", "").strip()
        if value:
            import base64
            import binascii

            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise forms.ValidationError("The secret must be base64, as Daily shows it.")
            return value
        # blank: keep what is stored
        return self.instance.dialin_webhook_secret if self.instance.pk else ""

    def save(self, commit=True):
        if self.cleaned_data.get("clear_dialin_webhook_secret"):
            self.instance.dialin_webhook_secret = ""
        return super().save(commit)


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdmin):
    form = OrganizationForm
    org_field = "pk"
    list_display = ["name", "slug", "timezone", "is_active", "has_webhook_secret", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}

    def org_id_of(self, obj):
        return obj.pk

    def get_queryset(self, request):
        qs = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return qs
        return qs.filter(pk__in=list(access.roles_for(request.user)))

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(boolean=True, description="Webhook secret")
    def has_webhook_secret(self, obj):
        return bool(obj.dialin_webhook_secret)


@admin.register(OrganizationMembership)
class OrganizationMembershipAdmin(OrgScopedAdmin):
    """Members of the organisation. "Add" makes a new person in one form — their
    login (a staff user) and their membership — so an organisation's admin needs
    no rights on Django's users."""

    read_right = access.MANAGE
    list_display = ["user", "organization", "role", "created_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = StaffMemberForm
            kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                ("Who", {"fields": ["username", "first_name", "last_name", "email", "password1", "password2"]}),
                ("Membership", {"fields": ["organization", "role"]}),
            ]
        return [(None, {"fields": ["user", "organization", "role"]})]

    def get_readonly_fields(self, request, obj=None):
        return ["user", "organization"] if obj is not None else []

    list_filter = ["role", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = []
    list_select_related = ["user", "organization"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """An organisation admin picks from their organisations' members and from
        accounts with no organisation yet, not from every user of the deployment."""
        if db_field.name == "user" and not request.user.is_superuser:
            managed = access.org_ids_with(request.user, access.MANAGE)
            kwargs["queryset"] = get_user_model().objects.filter(
                Q(memberships__organization_id__in=managed) | Q(memberships__isnull=True),
                is_superuser=False,
            ).distinct().order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["organization", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdmin):
    read_right = access.MANAGE
    form = ApiKeyForm
    list_display = ["name", "prefix", "organization", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at", "created_by"]
    list_select_related = ["organization"]
    actions = ["revoke_keys"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name"]
        return ["organization", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["organization", "prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        key, raw = ApiKey.generate(obj.organization, name=obj.name, created_by=request.user)
        obj.pk = key.pk
        obj.refresh_from_db()
        request.new_api_key = raw  # shown once by response_add, never put in a cookie

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "new_api_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return show_once(
            request, title="New API key",
            warning="Copy the key now: it is shown only on this page, once, and stored only as a hash.",
            secrets=[(obj.name, raw)],
            next_url=reverse("admin:organizations_apikey_change", args=[obj.pk]),
        )

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, not deleted, so calls keep who requested them

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        count = 0
        for key in queryset:
            if access.has_right(request.user, access.MANAGE, key.organization_id) and key.revoked_at is None:
                key.revoke()
                count += 1
        self.message_user(request, f"Revoked {count} API key(s).")


class WorkflowForm(forms.ModelForm):
    outcome_results = LineListField(
        label="Outcome results",
        help_text="One per line: the results the bot may record (e.g. confirmed, rescheduled, declined).",
    )

    window_days = forms.TypedMultipleChoiceField(
        label="Days calls may ring", coerce=int, required=False, widget=forms.CheckboxSelectMultiple,
        initial=default_window_days,
        choices=[(1, "Monday"), (2, "Tuesday"), (3, "Wednesday"), (4, "Thursday"), (5, "Friday"),
                 (6, "Saturday"), (7, "Sunday")],
        help_text="The days calls may ring on, in the patient's time zone.",
    )
    retry_on = forms.MultipleChoiceField(
        label="Try again after", required=False, widget=forms.CheckboxSelectMultiple, initial=default_retry_on,
        choices=[("no_answer", "No answer"), ("busy", "Busy"), ("voicemail", "Voicemail"), ("declined", "Declined")],
    )

    class Meta:
        model = Workflow
        fields = "__all__"
        # Words a clinic manager uses, units in the label.
        labels = {
            "max_duration_s": "Longest call (seconds)",
            "max_dialout_attempts": "Dial attempts per call",
            "silence_timeout_s": "Hang up after this much silence (seconds)",
            "ring_timeout_s": "Let it ring for (seconds)",
            "window_start": "Calls ring from",
            "window_end": "Calls ring until",
            "max_attempts": "Calls per request (first call and retries)",
            "retry_delays_min": "Minutes to wait before each retry",
        }

    def clean_window_days(self):
        days = self.cleaned_data.get("window_days")
        if not days:
            raise forms.ValidationError("Tick at least one day calls may ring on.")
        return days


@admin.register(Workflow)
class WorkflowAdmin(OrgScopedAdmin):
    form = WorkflowForm
    write_right = access.WRITE_WORKFLOWS
    list_display = ["name", "slug", "organization", "direction", "is_active", "max_duration_s", "updated_at"]
    list_filter = ["direction", "is_active", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "slug"]
    list_select_related = ["organization"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "slug", "direction", "is_active"]}),
        ("Conversation", {"fields": ["instructions", "first_message", "voice", "language", "speaks_first"]}),
        ("Call control", {"fields": ["voicemail_message", "leave_voicemail", "transfer_number",
                                     "silence_timeout_s", "ring_timeout_s"]}),
        ("Limits and results", {"fields": ["max_duration_s", "max_dialout_attempts", "outcome_results", "config"]}),
        ("Calling hours and attempts (dial-out)", {
            "fields": ["window_start", "window_end", "window_days", "retry_on", "max_attempts", "retry_delays_min"],
            "description": "Calls ring only inside these hours, in the patient's time zone. A patient without one "
            "is rung only when the hours are open in every time zone their phone number may be in (else the "
            "organisation's zone is used). Whatever the hours say, no call rings before 08:00 or after 21:00 "
            "the patient's time. A call that ends busy / no answer / voicemail / declined is tried again when "
            "listed in retry_on.",
        }),
        ("Calling law and identity", {
            "fields": ["consent_basis", "disclosure_message", "opt_out_digit", "verification"],
            "description": "What these calls rest on (it decides the organisation's limits a day and a week), what "
            "the bot says first, how a patient stops the calls, and what they must confirm before the bot "
            "knows more than their first name.",
        }),
    ]


from . import admin_audit  # noqa: E402,F401  (registers the audit trail's admin)
