import json
import re

from django.contrib import admin, messages
from django.db.models import Q
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from audit.models import AuditAction
from audit.services import record_request
from masking import mask_phone, mask_phones
from organizations import access, timefmt
from organizations.admin_scoping import OrgScopedAdmin
from organizations.models import Workflow
from patients import display

from . import labels, selectors, services
from .models import FINAL_STATUSES, CallEvent, CallSession, CallStatus
from .shaping import viewer_event_data


class OutcomeResultFilter(admin.SimpleListFilter):
    """The outcome's result, among the results the user's workflows declare."""

    title = "outcome result"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        results = set()
        for declared in Workflow.objects.filter(
            organization_id__in=list(access.roles_for(request.user))
        ).values_list("outcome_results", flat=True):
            results.update(r for r in (declared or []) if isinstance(r, str))
        return [(r, r) for r in sorted(results)] + [("__none__", "No outcome")]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value == "__none__":
            return queryset.filter(outcome__isnull=True)
        return queryset.filter(outcome__result=value)


class EndReasonFilter(admin.SimpleListFilter):
    """How the call ended (the bot's reason, or the server's: start failed, stale, canceled)."""

    title = "end reason"
    parameter_name = "end_reason"
    REASONS = [
        "completed", "no_answer", "busy", "voicemail", "declined", "transferred", "transfer_failed", "silence",
        "max_duration", "dialout_failed", "canceled", "campaign_canceled", "remote_ended", "start_failed", "stale",
        "bot_error", "capacity", "opted_out", "unverified",
    ]

    def lookups(self, request, model_admin):
        return [(r, labels.end_reason(r)) for r in self.REASONS]

    def queryset(self, request, queryset):
        value = self.value()
        if value in self.REASONS:
            return queryset.filter(end_reason=value)
        return queryset


class CallEventInline(admin.TabularInline):
    model = CallEvent
    fields = ["at_local", "seq", "kind", "data"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["at", "id"]

    @admin.display(description="At")
    def at_local(self, obj):
        """In the call's organisation's zone, like every time on the call's pages."""
        return timefmt.in_zone(obj.at, obj.call.organization.timezone, "%H:%M:%S.%f")[:-3] if obj.at else "—"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("call__organization")

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
        "status", QueueFilter, OutcomeResultFilter, EndReasonFilter, "direction", ("workflow", admin.RelatedOnlyFieldListFilter),
        ("organization", admin.RelatedOnlyFieldListFilter), "created_at",
    ]
    search_fields = ["id", "patient__external_id", "daily_call_id"]
    search_help_text = "Call id, the patient's EHR id, or (if your role shows them) the patient's name or phone."

    def get_search_results(self, request, queryset, search_term):
        """Beyond the ids: the patient's name and phone, but only in organisations
        where the user sees them — a viewer cannot find a call by what is masked."""
        qs, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = (search_term or "").strip()
        phi_orgs = [org_id for org_id in access.roles_for(request.user) if access.sees_phi(request.user, org_id)]
        if not term or not phi_orgs:
            return qs, may_have_duplicates
        words = term.split()[:4]
        by_name = Q()
        for word in words:
            by_name &= Q(patient__first_name__icontains=word) | Q(patient__last_name__icontains=word)
        digits = re.sub(r"\D", "", term)
        found = by_name
        if len(digits) >= 4:
            found |= Q(to_number__contains=digits, direction="dial_out") | Q(from_number__contains=digits, direction="dial_in")
        qs = qs | queryset.filter(found, organization_id__in=phi_orgs)
        return qs, may_have_duplicates
    list_select_related = ["organization", "workflow__organization", "patient"]  # str(workflow) names its organisation
    date_hierarchy = "created_at"
    inlines = [CallEventInline]
    fieldsets = [
        (None, {"fields": [
            "live_link", "id", "organization", "workflow", "direction", "status", "patient_display", "phone_clear",
        ]}),
        ("Timeline", {"fields": ["created_local", "started_local", "answered_local", "ended_local", "end_reason_display", "error"]}),
        ("Calling law", {"fields": ["consent_basis", "identity_verified_at", "identity_failures"]}),
        ("Call policy", {"fields": [
            "scheduled_local", "attempt_display", "previous_attempt_link", "next_attempt_link", "queue_display",
        ]}),
        ("Result", {"fields": ["outcome_display", "transcript_display", "dialout_attempts"]}),
        ("Daily", {"fields": ["daily_room_name", "daily_room_display", "daily_call_id", "daily_call_domain"]}),
        ("Requested by", {"fields": ["requested_by_user", "requested_by_api_key"]}),
    ]

    def action_label(self, obj) -> str:
        return f"call {str(obj.pk)[:8]}"

    def get_list_display(self, request):
        def patient(obj):
            return self._patient_text(request, obj)

        patient.short_description = "Patient"
        # Status right after the call: at 1280 px with the menu and the filters it stays on screen.
        return ["short_id", "status_badge", patient, "workflow_name", "direction", "scheduled_local", "attempt_display", "created_local", "result", "live_link"]

    @admin.display(description="Result")
    def result(self, obj):
        """The outcome (what the conversation achieved) · the end reason (how the call ended)."""
        outcome = (obj.outcome or {}).get("result") if isinstance(obj.outcome, dict) else None
        reason = labels.end_reason(obj.end_reason).replace(" ", "\u00a0")
        return " · ".join(p for p in (outcome, reason) if p) or "—"

    @admin.display(description="Workflow", ordering="workflow__name")
    def workflow_name(self, obj):
        return obj.workflow.name
    @admin.display(description="Attempt", ordering="attempt")
    def attempt_display(self, obj):
        return f"{obj.attempt} of {obj.max_attempts}" if obj.direction == "dial_out" else "—"

    def _attempt_link(self, call):
        if call is None:
            return "—"
        when = (f", rings {timefmt.show(call.scheduled_for, call.organization.timezone)} {timefmt.CLINIC_TIME}"
                if call.status == CallStatus.SCHEDULED else "")
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
            return (f"Deferred {obj.start_deferrals}× (bot runner at capacity); next try "
                    f"{timefmt.show(obj.start_retry_at, obj.organization.timezone, seconds=True)} {timefmt.CLINIC_TIME}")
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
        return [f for fs in self.fieldsets for f in fs[1]["fields"]] + [
            "patient_masked", "outcome_result", "error_masked", "phone_display",
        ]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not access.sees_phi(request.user, obj.organization_id):
            return [
                (name, {"fields": [
                    self.VIEWER_FIELDS.get(f, f) for f in opts["fields"] if f not in self.NOT_FOR_VIEWERS
                ]})
                for name, opts in self.fieldsets
            ]
        return self.fieldsets

    # The room's address lets anyone holding it join the call: not for viewers.
    NOT_FOR_VIEWERS = ("transcript_display", "daily_room_display")

    @admin.display(description="Daily room")
    def daily_room_display(self, obj):
        """A link only while the call may still be in its room, and only to a real Daily
        room: the room is deleted when the call ends, and the demo's sandbox rooms are
        not pages."""
        url = obj.daily_room_url
        if not url:
            return "—"
        if obj.status in FINAL_STATUSES:
            return f"{url} (deleted when the call ended)"
        if not url.startswith("https://"):
            return f"{url} (simulated room: nothing to open)"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    # What a viewer gets instead (docs/architecture.md, "Roles"): no name, phone or free text from the call.
    VIEWER_FIELDS = {
        "patient_display": "patient_masked", "phone_clear": "phone_display", "outcome_display": "outcome_result",
        "error": "error_masked",
    }

    # Times in the organisation's zone, and the patient's where it differs.
    def _local(self, obj, value):
        if value is None:
            return "—"
        patient_tz = obj.patient.timezone if obj.patient_id else ""
        return timefmt.with_patient(value, obj.organization.timezone, patient_tz, "%Y-%m-%d %H:%M:%S")

    @admin.display(description=f"Created ({timefmt.CLINIC_TIME})", ordering="created_at")
    def created_local(self, obj):
        return self._local(obj, obj.created_at)

    @admin.display(description=f"Scheduled for ({timefmt.CLINIC_TIME})", ordering="scheduled_for")
    def scheduled_local(self, obj):
        return timefmt.show(obj.scheduled_for, obj.organization.timezone)

    @admin.display(description="Started")
    def started_local(self, obj):
        return self._local(obj, obj.started_at)

    @admin.display(description="Answered")
    def answered_local(self, obj):
        return self._local(obj, obj.answered_at)

    @admin.display(description="Ended")
    def ended_local(self, obj):
        return self._local(obj, obj.ended_at)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        # Non-breaking spaces: the column is never wrapped or cut ("In progress"), with no inline style.
        return obj.get_status_display().replace(" ", "\u00a0")

    @admin.display(description="Phone")
    def phone_clear(self, obj):
        return obj.patient_phone or "—"

    @admin.display(description="Outcome")
    def outcome_result(self, obj):
        return (obj.outcome or {}).get("result") or "—"

    @admin.display(description="End reason")
    def end_reason_display(self, obj):
        return labels.end_reason(obj.end_reason) or "—"

    @admin.display(description="Outcome")
    def outcome_display(self, obj):
        """The result, the bot's notes and what it gathered, as sentences and a list (not JSON)."""
        outcome = obj.outcome if isinstance(obj.outcome, dict) else None
        if not outcome:
            return f"None recorded ({labels.end_reason(obj.end_reason).lower()})" if obj.is_final else "None yet"
        data = outcome.get("data") if isinstance(outcome.get("data"), dict) else {}
        return format_html(
            "<p><strong>{}</strong></p>{}{}", outcome.get("result") or "—",
            format_html("<p>{}</p>", outcome["notes"]) if outcome.get("notes") else "",
            format_html("<dl>{}</dl>", format_html_join(
                "", "<dt>{}</dt><dd>{}</dd>",
                ((key.replace("_", " ").capitalize(), value if not isinstance(value, (dict, list)) else
                  json.dumps(value, ensure_ascii=False)) for key, value in data.items()),
            )) if data else "",
        )

    @admin.display(description="Error")
    def error_masked(self, obj):
        return mask_phones(obj.error) if obj.error else "—"

    def get_inlines(self, request, obj):
        if obj is not None and not access.sees_phi(request.user, obj.organization_id):
            return []
        return self.inlines

    @admin.display(description="Patient")
    def patient_display(self, obj):
        """Shown only to those who see PHI (viewers get ``patient_masked``): the name in clear."""
        if not obj.patient_id:
            return "Unknown caller"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:patients_patient_change", args=[obj.patient_id]),
            f"{obj.patient.full_name} ({obj.patient.external_id})" if obj.patient.external_id else obj.patient.full_name,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The heading names the patient as this user may see them (``str(call)`` stays masked for logs)."""
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        if obj is not None:
            who = display.label_for(request.user, obj.patient) if obj.patient_id else "Unknown caller"
            label = f"{obj.get_direction_display()} {who} — {obj.get_status_display()} ({str(obj.pk)[:8]})"
            extra_context.setdefault("subtitle", label)
            extra_context.setdefault("call_label", label)
        response = super().change_view(request, object_id, form_url, extra_context)
        if obj is not None and request.method == "GET" and getattr(response, "status_code", None) == 200:
            record_request(request, AuditAction.VIEW_CALL, obj, via="admin")
        return response

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
            format_html_join(
                "", "<p><strong>{}:</strong> {}</p>", ((labels.speaker(line.get("role")), line.get("text", "")) for line in lines)
            ),
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
            self.message_user(request, f"Canceled {canceled} call{pluralize(canceled)}.", messages.SUCCESS)
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
    list_display = ["at_local", "call_link", "seq", "kind"]

    def has_module_permission(self, request):
        # Not a menu item for clinic staff: each call's events are on its own page.
        # Engineers (superusers) keep it in the menu; the URL still works for members.
        return request.user.is_active and request.user.is_superuser
    list_filter = ["kind"]
    search_fields = ["call__id"]
    list_select_related = ["call__organization"]
    date_hierarchy = "at"
    fields = ["call", "at_local", "seq", "kind", "data"]
    readonly_fields = fields + ["viewer_data"]

    def get_fields(self, request, obj=None):
        if obj is not None and not access.sees_phi(request.user, obj.call.organization_id):
            return ["call", "at_local", "seq", "kind", "viewer_data"]
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

    @admin.display(description=f"At ({timefmt.CLINIC_TIME})", ordering="at")
    def at_local(self, obj):
        return timefmt.show(obj.at, obj.call.organization.timezone, seconds=True)

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
from . import admin_organizations  # noqa: E402,F401
