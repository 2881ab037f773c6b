"""Campaigns in the admin: the campaign page (progress, CSV upload, start/pause/resume/cancel)
and "Start a campaign…" on selected patients.

Every button goes through ``campaigns.services``; staff and admins of the
campaign's organisation (``PLACE_CALLS``) see and use them, viewers see the
progress only. The patient admin is extended here and registered again
(``calls`` already did the same for "Call patient"), so ``patients`` and
``calls`` know nothing of campaigns.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from calls.admin_patients import PatientCallAdmin, WorkflowChoiceField, dialout_workflows
from calls.broadcast import serialize_call
from calls.shaping import shape_call
from calls.views import STATUS_LABELS
from organizations import access
from organizations.admin_scoping import OrgScopedAdmin
from patients.models import Patient

from . import importing, selectors, services
from .broadcast import serialize_campaign
from .models import MAX_PACE_PER_MINUTE, Campaign, CampaignStatus

ACTIONS = {
    "start": (services.start_campaign, "Started the campaign."),
    "pause": (services.pause_campaign, "Paused: no new call starts; calls in progress finish."),
    "resume": (services.resume_campaign, "Resumed."),
    "cancel": (services.cancel_campaign, "Canceled the campaign and every call of it that had not started."),
}


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = ["organization", "workflow", "name", "pace_per_minute", "start_at"]

    def clean(self):
        data = super().clean()
        org, workflow = data.get("organization"), data.get("workflow")
        if org and workflow and workflow.organization_id != org.pk:
            self.add_error("workflow", "Choose a workflow of the campaign's organisation.")
        elif workflow and not (workflow.dials_out and workflow.is_active):
            self.add_error("workflow", "Choose an active workflow that places calls.")
        return data


class UploadForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text=(
        "Columns: external_id, and optionally first_name, last_name, phone, date_of_birth (YYYY-MM-DD) to create "
        "patients that do not exist yet."
    ))


@admin.register(Campaign)
class CampaignAdmin(OrgScopedAdmin):
    write_right = access.PLACE_CALLS
    form = CampaignForm
    list_display = ["name", "organization", "workflow", "status", "pace_per_minute", "start_at", "created_at"]
    list_filter = ["status"]
    list_select_related = ["organization", "workflow"]
    search_fields = ["name"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "workflow":
            kwargs["queryset"] = dialout_workflows(access.org_ids_with(request.user, access.PLACE_CALLS))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # a campaign's calls keep its id: cancel instead

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by_user = request.user
            obj.status = CampaignStatus.DRAFT
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, "Campaign created as a draft: upload its patients, then start it.")
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[obj.pk]))

    def get_urls(self):
        return [
            path("<int:pk>/upload/", self.admin_site.admin_view(self.upload_view), name="campaigns_campaign_upload"),
            *[
                path(f"<int:pk>/{action}/", self.admin_site.admin_view(self.action_view),
                     {"action": action}, name=f"campaigns_campaign_{action}")
                for action in ACTIONS
            ],
        ] + super().get_urls()

    def _visible(self, request, pk) -> Campaign:
        campaign = self.get_queryset(request).select_related("organization", "workflow").filter(pk=pk).first()
        if campaign is None:
            raise Http404("No such campaign.")
        return campaign

    def _may_act(self, request, campaign) -> bool:
        return access.has_right(request.user, access.PLACE_CALLS, campaign.organization_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The campaign page: live progress, buttons for staff and admins, its calls, the CSV upload."""
        if not str(object_id).isdigit():
            raise Http404("No such campaign.")
        campaign = self._visible(request, int(object_id))
        sees = access.sees_phi(request.user, campaign.organization_id)
        may_act = self._may_act(request, campaign)
        rows = []
        for call in selectors.calls_of(campaign):
            shaped = shape_call(serialize_call(call), sees)
            rows.append({"c": shaped, "call": call, "status_label": STATUS_LABELS.get(call.status, call.status),
                         "url": reverse("calls:detail", kwargs={"session_id": call.pk})})
        payload = serialize_campaign(campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": campaign.name,
            "opts": self.opts,
            "campaign": campaign,
            "p": payload,
            "count_items": [(key, payload["counts"][key]) for key in selectors.PROGRESS_KEYS],
            "skipped": selectors.skipped(campaign) if sees else [],
            "rows": rows,
            "may_act": may_act,
            "buttons": self._buttons(campaign) if may_act else [],
            "upload_form": UploadForm() if may_act and campaign.status == CampaignStatus.DRAFT else None,
            "report": getattr(request, "_import_report", None),
            "has_view_permission": True,
            "original": campaign,
            "ws_path": f"/ws/campaigns/{campaign.pk}/",
        }
        return TemplateResponse(request, "admin/campaigns/campaign/page.html", context)

    @staticmethod
    def _buttons(campaign) -> list[tuple[str, str, str]]:
        status = campaign.status
        return [
            (name, label, reverse(f"admin:campaigns_campaign_{name}", args=[campaign.pk]))
            for name, label, allowed in [
                ("start", "Start campaign", status == CampaignStatus.DRAFT),
                ("pause", "Pause", status == CampaignStatus.RUNNING),
                ("resume", "Resume", status == CampaignStatus.PAUSED),
                ("cancel", "Cancel campaign", status in (CampaignStatus.DRAFT, CampaignStatus.RUNNING,
                                                          CampaignStatus.PAUSED)),
            ] if allowed
        ]

    def action_view(self, request, pk, action):
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        if action not in ACTIONS:
            raise Http404("No such action.")
        campaign = self._visible(request, pk)
        if not self._may_act(request, campaign):
            raise PermissionDenied("Only staff and admins may change campaigns.")
        service, done = ACTIONS[action]
        try:
            service(campaign) if action != "start" else service(campaign, by_user=request.user)
        except services.CallRefused as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))

    def upload_view(self, request, pk):
        campaign = self._visible(request, pk)
        if not self._may_act(request, campaign):
            raise PermissionDenied("Only staff and admins may add patients to campaigns.")
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            self.message_user(request, "Choose a CSV file to upload.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        upload = form.cleaned_data["file"]
        if upload.size > importing.MAX_BYTES:
            report = importing.ImportReport(ok=False, errors=[
                f"The file is larger than {importing.MAX_BYTES // (1024 * 1024)} MB; split it."])
        else:
            report = importing.import_targets(campaign, upload.read())
        if report.ok:
            self.message_user(
                request,
                f"Imported {report.rows} row(s): {report.added_targets} patient(s) added to the campaign, "
                f"{report.created_patients} new patient(s) created.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[pk]))
        # Shown on the page itself: the file created nothing.
        request._import_report = report
        response = self.change_view(request, str(pk))
        response.status_code = 400
        return response


# --- "Start a campaign…" on selected patients ------------------------------------------


class StartCampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    pace_per_minute = forms.IntegerField(min_value=1, max_value=MAX_PACE_PER_MINUTE, initial=10,
                                         help_text="At most this many calls start in any 60 seconds.")
    start_at = forms.DateTimeField(required=False, help_text="Leave empty to start now.")

    def __init__(self, *args, workflows, show_org=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workflow"] = WorkflowChoiceField(
            queryset=workflows, show_org=show_org, empty_label=None, label="Workflow"
        )
        self.order_fields(["name", "workflow", "pace_per_minute", "start_at"])


class PatientCampaignAdmin(PatientCallAdmin):
    actions = [*PatientCallAdmin.actions, "start_campaign"]

    @admin.action(description="Start a campaign…", permissions=["place_call"])
    def start_campaign(self, request, queryset):
        queryset = queryset.select_related("organization")
        allowed = set(access.org_ids_with(request.user, access.PLACE_CALLS))
        org_ids = {p.organization_id for p in queryset} & allowed
        workflows = dialout_workflows(org_ids)
        apply = bool(request.POST.get("apply"))
        form = StartCampaignForm(request.POST if apply else None, workflows=workflows, show_org=len(org_ids) > 1)
        if apply and form.is_valid():
            workflow = form.cleaned_data["workflow"]
            patients = [p for p in queryset if p.organization_id == workflow.organization_id]
            if len(patients) != len(queryset):
                self.message_user(request, "Every selected patient must belong to the workflow's organisation.",
                                  messages.ERROR)
                return None
            try:
                campaign = services.create_campaign(
                    organization=workflow.organization,
                    workflow=workflow,
                    name=form.cleaned_data["name"],
                    patients=patients,
                    pace_per_minute=form.cleaned_data["pace_per_minute"],
                    start_at=form.cleaned_data["start_at"],
                    created_by_user=request.user,
                )
            except services.CallRefused as exc:
                self.message_user(request, f"The campaign was not started: {exc.message}", messages.ERROR)
                return None
            self.message_user(request, f"Started the campaign “{campaign.name}”.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a campaign",
            "opts": self.opts,
            "form": form,
            "queryset": queryset,
            "has_workflows": workflows.exists(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "start_campaign",
        }
        return TemplateResponse(request, "admin/patients/patient/start_campaign.html", context)


admin.site.unregister(Patient)
admin.site.register(Patient, PatientCampaignAdmin)
