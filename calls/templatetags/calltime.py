"""``{% load calltime %}``: ``{{ dt|in_zone:tz }}``, ``{{ dt|in_zone_date:tz }}`` and
``{{ dt|when:tz }}`` and ``{{ dt|with_patient_zone:call }}``: all ``organizations.timefmt.show``."""

from django import template

from organizations import timefmt

register = template.Library()


@register.filter
def in_zone(dt, tz_name):
    """The clock time (a call's own steps: the page shows its day once)."""
    return timefmt.show(dt, tz_name, date=False, seconds=True)


@register.filter
def in_zone_date(dt, tz_name):
    return timefmt.show(dt, tz_name, seconds=True)


@register.filter
def when(dt, tz_name):
    """Date and minute: lists, schedules, attempts."""
    return timefmt.show(dt, tz_name)


@register.filter
def with_patient_zone(dt, call):
    """The call's organisation's date and time, and its patient's where it differs."""
    if not dt:
        return "—"
    patient_tz = call.patient.timezone if getattr(call, "patient_id", None) else ""
    return timefmt.with_patient(dt, call.organization.timezone, patient_tz, timefmt.DATETIME)
