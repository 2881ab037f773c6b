"""The dashboard (/calls/dashboard/) and the CSV export of calls, per organisation.

Staff only (``is_staff``), scoped to the user's organisations; the export is
shaped for the role (``calls.reports.export_rows``). Charts are SVG drawn here
on the server: no script, no CDN.
"""

from __future__ import annotations

import logging

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from audit.models import AuditAction
from audit.services import record_request
from organizations import access, timefmt
from organizations.models import Organization

from . import reports, selectors
from .views import _page

log = logging.getLogger("calls.export")

# Status colours: the live pages' badge colours (static/calls/live.css).
STATUS_COLOURS = {
    "queued": "#9aa5b1", "starting": "#7b8794", "ringing": "#f0b429", "waiting": "#f7c948",
    "in_progress": "#2186eb", "completed": "#3ebd93", "failed": "#e12d39", "no_answer": "#a368fc",
    "busy": "#f35627", "canceled": "#52606d",
}
CHART_W, CHART_H, PAD_L, PAD_B = 720, 220, 36, 24


def _organization(request) -> tuple[Organization, list[Organization]]:
    org_ids = list(access.roles_for(request.user))
    orgs = list(Organization.objects.filter(pk__in=org_ids).order_by("name"))
    if not orgs:
        raise Http404("You are not a member of any organisation.")
    raw = request.GET.get("org", "")
    chosen = next((o for o in orgs if str(o.pk) == raw), None)
    if raw and chosen is None:
        raise Http404("No such organisation.")
    return chosen or orgs[0], orgs


def _filters(request):
    org, orgs = _organization(request)
    workflows = list(selectors.workflows_for([org.pk]))
    today = timezone.now().astimezone(timefmt.zone(org.timezone)).date()
    filters, notes = reports.make_filters(org, {w.pk for w in workflows}, request.GET, today)
    return filters, notes, org, orgs, workflows


def _num(value: float) -> str:
    """An SVG coordinate, as text: what the template would print for the rounded
    float, without localising each of a year's thousands of them (most of the
    page's time at a year's range)."""
    return str(round(value, 1))


LABEL_HALF_W = 18


def _day_chart(fig: reports.Figures) -> dict:
    """Stacked bars: one per day, one segment per status."""
    days = fig.per_day
    top = max([d["total"] for d in days] + [1])
    inner_w, inner_h = CHART_W - PAD_L, CHART_H - PAD_B
    slot = inner_w / max(len(days), 1)
    bar_w = max(slot * 0.8, 1)
    bars, labels = [], []
    step = max(1, len(days) // 10)
    for i, d in enumerate(days):
        x = PAD_L + i * slot + (slot - bar_w) / 2
        y = inner_h
        for status, label in fig.statuses:
            n = d["counts"].get(status, 0)
            if not n:
                continue
            h = inner_h * n / top
            y -= h
            bars.append({"x": _num(x), "y": _num(y), "w": _num(bar_w), "h": _num(h),
                         "colour": STATUS_COLOURS.get(status, "#999"), "title": f"{d['day']:%a %d %b}: {n} {label.lower()}"})
        if i % step == 0:
            centre = x + bar_w / 2
            # A centred "06 Dec" is about 32 px wide: near the right edge it would be cut,
            # so that label ends at the edge instead.
            if centre + LABEL_HALF_W > CHART_W:
                labels.append({"x": _num(CHART_W), "text": f"{d['day']:%d %b}", "end": True})
            else:
                labels.append({"x": _num(centre), "text": f"{d['day']:%d %b}", "end": False})
    return {"w": CHART_W, "h": CHART_H, "bars": bars, "labels": labels, "top": top, "base": inner_h,
            "pad": PAD_L, "legend": [(label, STATUS_COLOURS.get(s, "#999")) for s, label in fig.statuses]}


def _outcome_bars(fig: reports.Figures) -> list[dict]:
    out = []
    for wf in fig.outcomes:
        rows = [{"result": r, "n": n, "w": round(300 * n / max(wf["total"], 1), 1),
                 "pct": round(100 * n / max(wf["total"], 1))} for r, n in wf["results"]]
        out.append({"workflow": wf["workflow"], "total": wf["total"], "rows": rows})
    return out


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}:{secs:02d}"


@staff_member_required
def dashboard(request):
    filters, notes, org, orgs, workflows = _filters(request)
    fig = reports.figures(filters, {w.pk: w.name for w in workflows})
    query = {"org": org.pk, "from": filters.start.isoformat(), "to": filters.end.isoformat()}
    if filters.workflow_id:
        query["workflow"] = filters.workflow_id
    return _page(request, "calls/dashboard.html", {
        "title": f"Dashboard — {org.name}",
        "org": org, "orgs": orgs, "workflows": workflows, "filters": filters, "notes": notes,
        "fig": fig, "chart": _day_chart(fig), "outcome_bars": _outcome_bars(fig),
        "answer_rate": f"{fig.answer_rate:.0%}" if fig.answer_rate is not None else "—",
        "median_duration": _seconds(fig.median_duration_s),
        "median_turn": f"{fig.median_turn_ms:.0f} ms" if fig.median_turn_ms is not None else "—",
        "export_url": f"{reverse('calls:export')}?{urlencode(query)}",
        "sees_phi": access.sees_phi(request.user, org.pk),
        "zone_label": timefmt.zone_label(timezone.now(), org.timezone),
    })


@staff_member_required
def export_csv(request):
    filters, _notes, org, _orgs, _workflows = _filters(request)
    sees = access.sees_phi(request.user, org.pk)
    record_export(request, org, filters, sees)
    response = StreamingHttpResponse(reports.export_rows(filters, sees), content_type="text/csv; charset=utf-8")
    name = f"calls-{org.slug}-{filters.start.isoformat()}-{filters.end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


def record_export(request, org, filters, sees_phi: bool) -> None:
    """Who exported which organisation's calls: the audit trail (ids only) and the log."""
    record_request(request, AuditAction.EXPORT, organization_id=org.pk, object_type="calls.callsession",
                   object_id="", via="page")
    log.info(
        "user %s exported calls of organisation %s (%s to %s, %s)",
        request.user.pk, org.pk, filters.start, filters.end, "full" if sees_phi else "masked",
    )
