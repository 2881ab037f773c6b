"""Times as an organisation reads them: in its own zone, and the patient's where it differs.

Pages, the admin, CSV exports and the live pages' JavaScript (``static/timefmt.js``,
which gets the zone name in ``data-tz``) all format through these rules, so a time
reads the same everywhere: 24-hour clock, ``2026-12-08 09:30`` (the date unless
the page is about one day's minutes), the organisation's zone — named once on the
page or in the column's heading, never after every time — and
"10:30 (patient 13:30 EST)" when the patient lives elsewhere.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, tzinfo
from functools import lru_cache

TIME = "%H:%M:%S"
MINUTE = "%H:%M"
DATETIME = "%Y-%m-%d %H:%M"


@lru_cache(maxsize=256)
def zone(name: str | None) -> tzinfo:
    """The zone called ``name``; UTC for an empty or unknown name."""
    try:
        return zoneinfo.ZoneInfo(name) if name else zoneinfo.ZoneInfo("UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def show(dt: datetime | None, tz_name: str | None, *, date: bool = True, seconds: bool = False) -> str:
    """The one way staff pages show a time: ``2026-12-08 09:30`` in the organisation's zone, "—" for none."""
    if not dt:
        return "—"
    return in_zone(dt, tz_name, ("%Y-%m-%d " if date else "") + (TIME if seconds else MINUTE))


CLINIC_TIME = "clinic time"  # how a column or a page names the zone, once


def in_zone(dt: datetime | None, tz_name: str | None, fmt: str = TIME) -> str:
    if dt is None:
        return ""
    return dt.astimezone(zone(tz_name)).strftime(fmt)


def patient_differs(dt: datetime, org_tz: str | None, patient_tz: str | None) -> bool:
    if not patient_tz or patient_tz == org_tz:
        return False
    return dt.astimezone(zone(patient_tz)).utcoffset() != dt.astimezone(zone(org_tz)).utcoffset()


def with_patient(dt: datetime | None, org_tz: str | None, patient_tz: str | None, fmt: str = MINUTE) -> str:
    """"2026-12-01 10:30 (patient 13:30 EST)": the organisation's time, and the patient's if it differs."""
    if dt is None:
        return ""
    text = in_zone(dt, org_tz, fmt)
    if patient_differs(dt, org_tz, patient_tz):
        theirs = dt.astimezone(zone(patient_tz))
        text += f" (patient {theirs.strftime(MINUTE)} {theirs.tzname()})"
    return text


def zone_label(dt: datetime, tz_name: str | None) -> str:
    """The zone's abbreviation at ``dt`` (e.g. "PST")."""
    return dt.astimezone(zone(tz_name)).tzname() or ""
