"""Staff "Call patient" in the admin: a button on the patient's page and a bulk action.

Both go through ``calls.services.place_call`` — the service behind
``POST /api/start-call`` — so the same refusals apply; they show as admin
messages. Only roles with ``PLACE_CALLS`` (staff, admin) see or use them.

``patients`` must not import ``calls`` (dependencies point one way), so the
patient admin is extended here and re-registered.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.template.defaultfilters import pluralize

from audit.models import AuditAction
from audit.services import record_request
from organizations import access
from organizations.models import Workflow, WorkflowDirection
from patients import display
from patients.admin import PatientAdmin
from patients.models import Patient

from . import policy, retention, rules, services
from .models import CallSession


def dialout_workflows(organization_ids):
    return (
        Workflow.objects.filter(
            organization_id__in=list(organization_ids),
            is_active=True,
            direction__in=[WorkflowDirection.DIAL_OUT, WorkflowDirection.BOTH],
        )
        .select_related("organization")
        .order_by("organization__name", "name")
    )


class WorkflowChoiceField(forms.ModelChoiceField):
    def __init__(self, *args, show_org: bool = False, **kwargs):
        self.show_org = show_org
        super().__init__(*args, **kwargs)

    def label_from_instance(self, obj):
        return f"{obj.name} — {obj.organization.name}" if self.show_org else obj.name


class CallPatientForm(forms.Form):
    def __init__(self, *args, workflows, show_org=False, zone_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workflow"] = WorkflowChoiceField(
            queryset=workflows, show_org=show_org, empty_label=None, label="Workflow"
        )
        if zone_name:  # one patient: "now" or a time in the patient's zone
            self.fields["ring_at"] = forms.DateTimeField(
                required=False,
                label="Or ring at",
                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
                input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
                help_text=f"The patient's local time ({zone_name}); moved into the workflow's calling hours.",
            )

    def clean(self):
        data = super().clean()
        if "ring_at" in self.fields and self.data.get("when") == "later" and not data.get("ring_at"):
            self.add_error("ring_at", "Give the time to ring, or choose Call now.")
        return data


def wall_time(value) -> tuple:
    """(date, time) as typed: a form's datetime is made aware in the server's zone; undo that."""
    naive = timezone.make_naive(value) if timezone.is_aware(value) else value
    return naive.date(), naive.time()


def describe_ring_time(at, now, patient, organization) -> str:
    """When a call rings, for staff: in the patient's zone and the clinic's."""
    if at <= now:
        return "now"
    zone = policy.patient_zone(patient, organization)
    clinic = policy.zone_named(organization.timezone)
    text = f"{at.astimezone(zone):%a %d %b %Y %H:%M} ({zone.key})"
    if clinic.key != zone.key:
        text += f", {at.astimezone(clinic):%a %H:%M} clinic time ({clinic.key})"
    return text


def ring_previews(workflows, patient) -> list[dict]:
    """For each workflow: when a call placed now would ring (its hours in the callee's zone(s), the
    legal floor, the organisation's limits for its consent basis), and what moved it."""
    now = timezone.now()
    previews = []
    for workflow in workflows:
        row = {
            "workflow": workflow.name,
            "hours": f"{workflow.window_start:%H:%M}–{workflow.window_end:%H:%M}, "
                     + " ".join(DAY_NAMES[d] for d in sorted(workflow.window_days or [])),
            "basis": workflow.get_consent_basis_display(),
        }
        try:
            ring = policy.plan(workflow, patient, patient.organization, basis=workflow.consent_basis,
                               number=patient.phone, now=now)
        except rules.NoCallingHours as exc:
            previews.append({**row, "rings": f"never: {exc}", "now": False, "why": ""})
            continue
        why = ""
        if ring.capped_by is not None:
            why = f"the organisation allows {rules.describe_limit(ring.capped_by, workflow.consent_basis)}"
        elif ring.at > now:
            why = "outside calling hours"
        previews.append({**row, "rings": describe_ring_time(ring.at, now, patient, patient.organization),
                         "now": ring.at <= now, "why": why})
    return previews


DAY_NAMES = {1: "Mon", 2: "Tue", 3: "Wed", 4: "Thu", 5: "Fri", 6: "Sat", 7: "Sun"}


class PatientCallAdmin(PatientAdmin):
    change_form_template = "admin/patients/patient/change_form.html"
    actions = ["call_with_workflow"]

    # --- permissions -------------------------------------------------------------

    def has_place_call_permission(self, request, obj=None):
        if obj is None:
            return access.has_right(request.user, access.PLACE_CALLS)
        return access.has_right(request.user, access.PLACE_CALLS, obj.organization_id)

    # --- the "Call patient" button ---------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/call/",
                self.admin_site.admin_view(self.call_patient_view),
                name="%s_%s_call" % info,
            ),
            path(
                "<path:object_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="%s_%s_export" % info,
            ),
        ] + super().get_urls()

    # --- "Export record": the patient's record as JSON (a subject access request) ----------

    def has_export_permission(self, request, obj) -> bool:
        """Whoever sees the patient in clear and may change patients in its organisation."""
        return access.sees_phi(request.user, obj.organization_id) and access.has_right(
            request.user, access.WRITE_PATIENTS, obj.organization_id
        )

    def export_view(self, request, object_id):
        patient = self.get_object(request, object_id)  # scoped to the user's organisations
        if patient is None:
            raise Http404("No such patient.")
        if not self.has_export_permission(request, patient):
            raise PermissionDenied
        record_request(request, AuditAction.EXPORT_PATIENT, patient, via="admin")
        response = JsonResponse(retention.export_patient(patient), json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="patient-{patient.pk}.json"'
        response["Cache-Control"] = "no-store"
        return response

    PATIENT_CALLS = 50

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, object_id)
        extra_context["can_place_call"] = obj is not None and self.has_place_call_permission(request, obj)
        extra_context["can_export"] = obj is not None and self.has_export_permission(request, obj)
        if obj is not None:
            # The patient's calls, newest first, with links to their pages (one query).
            calls = list(
                CallSession.objects.filter(patient=obj, organization_id=obj.organization_id)
                .select_related("workflow", "organization", "patient")
                .order_by("-created_at")[: self.PATIENT_CALLS + 1]
            )
            extra_context["patient_calls"] = calls[: self.PATIENT_CALLS]
            extra_context["patient_calls_more"] = len(calls) > self.PATIENT_CALLS
        return super().change_view(request, object_id, form_url, extra_context)

    def call_patient_view(self, request, object_id):
        patient = self.get_object(request, object_id)  # scoped to the user's organisations
        if patient is None:
            raise Http404("No such patient.")
        if not self.has_place_call_permission(request, patient):
            raise PermissionDenied
        zone = policy.patient_zone(patient, patient.organization)
        workflows = dialout_workflows([patient.organization_id])
        form = CallPatientForm(request.POST or None, workflows=workflows, zone_name=zone.key)
        if request.method == "POST" and form.is_valid():
            not_before = None
            if request.POST.get("when") == "later":
                day, wall = wall_time(form.cleaned_data["ring_at"])
                not_before = policy.local_instant(day, wall, zone)
            try:
                call = services.place_call(
                    organization=patient.organization,
                    workflow=form.cleaned_data["workflow"],
                    patient=patient,
                    requested_by_user=request.user,
                    not_before=not_before,
                )
            except services.CallRefused as exc:
                self.message_user(request, f"The call was not placed: {exc.message}", messages.ERROR)
            else:
                if call.status == "scheduled":
                    when = describe_ring_time(call.scheduled_for, timezone.now(), patient, patient.organization)
                    capped = getattr(getattr(call, "plan", None), "capped_by", None)
                    why = f" (the organisation allows {rules.describe_limit(capped, call.consent_basis)})" if capped else ""
                    self.message_user(
                        request,
                        f"Scheduled: {display.label_for(request.user, patient)} will be called with "
                        f"{call.workflow.name} on {when}{why}.",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(
                        request, f"Calling {display.label_for(request.user, patient)} with {call.workflow.name}.",
                        messages.SUCCESS,
                    )
                return HttpResponseRedirect(call.get_absolute_url())
        context = {
            **self.admin_site.each_context(request),
            "title": "Call patient",
            "subtitle": display.label_for(request.user, patient),
            "patient_label": display.label_for(request.user, patient),
            "opts": self.opts,
            "original": patient,
            "form": form,
            "has_workflows": form.fields["workflow"].queryset.exists(),
            "previews": ring_previews(workflows, patient),
            "patient_zone": zone.key,
            "zone_choice": rules.callee_zones(patient, patient.organization).describe(),
        }
        return TemplateResponse(request, "admin/patients/patient/call_patient.html", context)

    # --- the bulk action -------------------------------------------------------------

    @admin.action(description="Call selected patients with workflow …", permissions=["place_call"])
    def call_with_workflow(self, request, queryset):
        queryset = queryset.select_related("organization")
        allowed = set(access.org_ids_with(request.user, access.PLACE_CALLS))
        org_ids = {p.organization_id for p in queryset} & allowed
        workflows = dialout_workflows(org_ids)
        form = CallPatientForm(
            request.POST if request.POST.get("apply") else None,
            workflows=workflows,
            show_org=len(org_ids) > 1,
        )
        if request.POST.get("apply") and form.is_valid():
            return self._call_selected(request, queryset, form.cleaned_data["workflow"], allowed)
        context = {
            **self.admin_site.each_context(request),
            "title": "Call selected patients",
            "opts": self.opts,
            "form": form,
            "queryset": queryset,
            "patient_rows": [(display.label_for(request.user, p), p.organization.name) for p in queryset],
            "has_workflows": workflows.exists(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "call_with_workflow",
        }
        return TemplateResponse(request, "admin/patients/patient/call_selected.html", context)

    def _call_selected(self, request, queryset, workflow, allowed):
        placed, refused = [], []
        for patient in queryset:
            if patient.organization_id not in allowed:
                refused.append(f"{display.label_for(request.user, patient)}: you may not place calls for {patient.organization.name}.")
                continue
            if patient.organization_id != workflow.organization_id:
                refused.append(f"{display.label_for(request.user, patient)}: the workflow belongs to another organisation.")
                continue
            try:
                placed.append(
                    services.place_call(
                        organization=patient.organization,
                        workflow=workflow,
                        patient=patient,
                        requested_by_user=request.user,
                    )
                )
            except services.CallRefused as exc:
                if exc.code == "not_configured":  # the same for every patient: say it once
                    refused.append(exc.message)
                    break
                refused.append(f"{display.label_for(request.user, patient)}: {exc.message}")
        if placed:
            scheduled = sum(1 for call in placed if call.status == "scheduled")
            note = (f" ({scheduled} outside calling hours or over the organisation's limit a day or a week: "
                    "scheduled for when they may ring)") if scheduled else ""
            self.message_user(
                request, f"Placed {len(placed)} call{pluralize(len(placed))} with {workflow.name}{note}.", messages.SUCCESS
            )
        for line in refused:
            self.message_user(request, f"Not called — {line}", messages.ERROR)
        if len(placed) == 1:
            return HttpResponseRedirect(placed[0].get_absolute_url())
        if placed:
            # The live list, filtered to the calls just placed.
            ids = ",".join(str(call.pk) for call in placed)
            return HttpResponseRedirect(f"{reverse('calls:live')}?ids={ids}")
        return None  # back to the patient list, with the messages


admin.site.unregister(Patient)
admin.site.register(Patient, PatientCallAdmin)
