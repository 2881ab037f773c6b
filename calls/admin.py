import json

from django.contrib import admin, messages
from django.utils.html import format_html

from organizations import access
from organizations.admin_scoping import OrgScopedAdmin
from organizations.masking import mask_phone

from . import selectors, services
from .models import CallEvent, CallSession, CallStatus
from .shaping import scrub_text, viewer_event_data


class CallEventInline(admin.TabularInline):
    model = CallEvent
    fields = ["at", "seq", "kind", "data"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class QueueFilter(admin.SimpleListFilter):
    """Where a call not yet ringing stands in the call policy."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [
            ("scheduled", "Scheduled (waiting for its time)"),
            ("waiting", "Waiting for a slot"),
            ("deferred", "Deferred (bot runner at capacity)"),
            ("retry", "Later attempts (2nd, 3rd …)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "scheduled":
            return queryset.filter(status=CallStatus.SCHEDULED)
        if value == "waiting":
            return queryset.filter(status=CallStatus.QUEUED, direction="dial_out", dispatched_at__isnull=True)
        if value == "deferred":
            return queryset.filter(status=CallStatus.QUEUED, start_deferrals__gt=0)
        if value == "retry":
            return queryset.filter(attempt__gt=1)
        return queryset


@admin.register(CallSession)
class CallSessionAdmin(OrgScopedAdmin):
    write_right = access.PLACE_CALLS
    # Related filters list only what the user may see (their organisations' objects).
    list_filter = [
        "status", QueueFilter, "direction", ("workflow", admin.RelatedOnlyFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter), "created_at",
    ]
    search_fields = ["id", "patient__external_id", "daily_call_id"]
    list_select_related = ["organization", "workflow__organization", "patient"]  # str(workflow) names its organisation
    date_hierarchy = "created_at"
    inlines = [CallEventInline]
    fieldsets = [
        (None, {"fields": [
            "live_link", "id", "organization", "workflow", "direction", "status", "patient_display", "phone_display",
        ]}),
        ("Timeline", {"fields": ["created_at", "started_at", "answered_at", "ended_at", "end_reason", "error"]}),
        ("Call policy", {"fields": [
            "scheduled_for", "attempt_display", "previous_attempt_link", "next_attempt_link", "queue_display",
        ]}),
        ("Result", {"fields": ["outcome", "transcript_display", "dialout_attempts"]}),
        ("Daily", {"fields": ["daily_room_name", "daily_room_url", "daily_call_id", "daily_call_domain"]}),
        ("Requested by", {"fields": ["requested_by_user", "requested_by_api_key"]}),
    ]

    def get_list_display(self, request):
        def patient(obj):
            return self._patient_text(request, obj)

        patient.short_description = "Patient"
        return [
            "short_id", patient, "workflow", "direction", "status", "scheduled_for", "attempt_display", "created_at",
            "end_reason", "live_link",
        ]

    @admin.display(description="Attempt", ordering="attempt")
    def attempt_display(self, obj):
        return f"{obj.attempt} of {obj.max_attempts}" if obj.direction == "dial_out" else "—"

    def _attempt_link(self, call):
        if call is None:
            return "—"
        when = f", rings {call.scheduled_for:%Y-%m-%d %H:%M} UTC" if call.status == CallStatus.SCHEDULED else ""
        return format_html(
            '<a href="{}">{} (attempt {}, {}{})</a>', call.get_absolute_url(), str(call.pk)[:8], call.attempt,
            call.get_status_display().lower(), when,
        )

    @admin.display(description="Previous attempt")
    def previous_attempt_link(self, obj):
        return self._attempt_link(obj.previous_attempt if obj.previous_attempt_id else None)

    @admin.display(description="Next attempt")
    def next_attempt_link(self, obj):
        return self._attempt_link(selectors.next_attempt(obj))

    @admin.display(description="In the queue")
    def queue_display(self, obj):
        if obj.status == CallStatus.SCHEDULED:
            return "Scheduled: waits for its time"
        if obj.status != CallStatus.QUEUED:
            return "—"
        if obj.start_deferrals:
            return f"Deferred {obj.start_deferrals}× (bot runner at capacity); next try {obj.start_retry_at:%H:%M:%S} UTC"
        if obj.dispatched_at is None and obj.direction == "dial_out":
            return "Waiting for a free slot"
        return "Handed to a worker"

    @admin.display(description="Live page")
    def live_link(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        label = "Watch live" if not obj.is_final else "Open call page"
        return format_html('<a href="{}">{}</a>', obj.get_absolute_url(), label)

    @admin.display(description="Call", ordering="created_at")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    def _patient_text(self, request, obj):
        sees = access.sees_phi(request.user, obj.organization_id)
        if obj.patient_id:
            return obj.patient.full_name if sees else obj.patient.masked_name
        return "Unknown caller"

    def get_readonly_fields(self, request, obj=None):
        return [f for fs in self.fieldsets for f in fs[1]["fields"]] + ["patient_masked", "outcome_result", "error_masked"]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not access.sees_phi(request.user, obj.organization_id):
            return [
                (name, {"fields": [
                    self.VIEWER_FIELDS.get(f, f) for f in opts["fields"] if f != "transcript_display"
                ]})
                for name, opts in self.fieldsets
            ]
        return self.fieldsets

    # What a viewer gets instead (DESIGN.md "Roles"): no name, phone or free text from the call.
    VIEWER_FIELDS = {"patient_display": "patient_masked", "outcome": "outcome_result", "error": "error_masked"}

    @admin.display(description="Outcome")
    def outcome_result(self, obj):
        return (obj.outcome or {}).get("result") or "—"

    @admin.display(description="Error")
    def error_masked(self, obj):
        return scrub_text(obj.error) if obj.error else "—"

    def get_inlines(self, request, obj):
        if obj is not None and not access.sees_phi(request.user, obj.organization_id):
            return []
        return self.inlines

    @admin.display(description="Patient")
    def patient_display(self, obj):
        if not obj.patient_id:
            return "Unknown caller"
        return format_html('<a href="../../../patients/patient/{}/change/">{}</a>', obj.patient_id, obj.patient)

    @admin.display(description="Patient")
    def patient_masked(self, obj):
        return obj.patient.masked_name if obj.patient_id else "Unknown caller"

    @admin.display(description="Phone")
    def phone_display(self, obj):
        return mask_phone(obj.patient_phone)

    @admin.display(description="Transcript")
    def transcript_display(self, obj):
        lines = obj.transcript or []
        if not lines:
            return "—"
        return format_html(
            "<div>{}</div>",
            format_html("".join(
                format_html("<p><strong>{}:</strong> {}</p>", line.get("role", "?"), line.get("text", ""))
                for line in lines
            )),
        )

    actions = ["cancel_calls"]

    def has_cancel_permission(self, request, obj=None):
        if obj is None:
            return access.has_right(request.user, access.PLACE_CALLS)
        return access.has_right(request.user, access.PLACE_CALLS, obj.organization_id)

    @admin.action(description="Cancel selected calls", permissions=["cancel"])
    def cancel_calls(self, request, queryset):
        """calls.services.cancel_call for each: marked canceled, Daily room deleted."""
        canceled, refused = 0, []
        for call in queryset.select_related("organization"):
            if not self.has_cancel_permission(request, call):
                refused.append(f"{str(call.pk)[:8]}: you may not cancel calls of {call.organization.name}.")
                continue
            try:
                services.cancel_call(call, by_user=request.user)
                canceled += 1
            except services.CallRefused as exc:
                refused.append(f"{str(call.pk)[:8]}: {exc.message}")
        if canceled:
            self.message_user(request, f"Canceled {canceled} call(s).", messages.SUCCESS)
        for line in refused:
            self.message_user(request, f"Not canceled — {line}", messages.ERROR)

    def has_add_permission(self, request):
        return False  # calls are placed with "Call patient", the API or a dial-in

    def has_change_permission(self, request, obj=None):
        return False  # the record is read-only; cancel is an action

    def has_delete_permission(self, request, obj=None):
        return False


# "Call patient" on the patient's admin page, and the bulk action.
@admin.register(CallEvent)
class CallEventAdmin(OrgScopedAdmin):
    """A read-only log across calls, for engineers chasing a problem.

    Viewers see no transcript lines or outcome details here either.
    """

    org_field = "call__organization"
    list_display = ["at", "call_link", "seq", "kind"]
    list_filter = ["kind"]
    search_fields = ["call__id"]
    list_select_related = ["call"]
    date_hierarchy = "at"
    fields = ["call", "at", "seq", "kind", "data"]
    readonly_fields = fields + ["viewer_data"]

    def get_fields(self, request, obj=None):
        if obj is not None and not access.sees_phi(request.user, obj.call.organization_id):
            return ["call", "at", "seq", "kind", "viewer_data"]
        return self.fields

    @admin.display(description="Data")
    def viewer_data(self, obj):
        """What a viewer's live page shows of this event (calls.shaping's allow-list)."""
        return json.dumps(viewer_event_data(obj.kind, obj.data), sort_keys=True)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        viewer_orgs = [
            org_id for org_id in access.roles_for(request.user) if not access.sees_phi(request.user, org_id)
        ]
        return qs.exclude(call__organization__in=viewer_orgs, kind__in=["transcript", "outcome"])

    @admin.display(description="Call")
    def call_link(self, obj):
        return format_html('<a href="{}">{}</a>', obj.call.get_absolute_url(), str(obj.call_id)[:8])

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


from . import admin_patients  # noqa: E402,F401
