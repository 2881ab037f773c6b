"""``{% load calltime %}``: ``{{ dt|in_zone:tz }}``, ``{{ dt|in_zone_date:tz }}`` and
``{{ dt|with_patient_zone:call }}`` (organizations.timefmt)."""

from django import template

from organizations import timefmt

register = template.Library()


@register.filter
def in_zone(dt, tz_name):
    return timefmt.in_zone(dt, tz_name, timefmt.TIME) if dt else "—"


@register.filter
def in_zone_date(dt, tz_name):
    return timefmt.in_zone(dt, tz_name, "%Y-%m-%d %H:%M:%S") if dt else "—"


@register.filter
def with_patient_zone(dt, call):
    """The call's organisation's time, and its patient's where it differs."""
    if not dt:
        return "—"
    patient_tz = call.patient.timezone if getattr(call, "patient_id", None) else ""
    return timefmt.with_patient(dt, call.organization.timezone, patient_tz, timefmt.TIME)
