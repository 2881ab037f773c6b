"""The organisation's numbers (the dashboard) and the CSV export of its calls.

Each figure is one aggregate query whatever the number of calls (medians are
computed by the database: ``PERCENTILE_CONT`` on PostgreSQL, the middle row of
an ordered scan elsewhere), so the dashboard's query count is constant
(tests/test_dashboard.py, ``bench/queries.py``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.db import connection
from django.db.models import (
    Aggregate, CharField, Count, DurationField, ExpressionWrapper, F, FloatField, Func, Q, QuerySet,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Substr, TruncDate

from organizations import timefmt
from masking import mask_name, mask_phone

from .models import FINAL_STATUSES, CallEvent, CallSession, CallStatus

MAX_DAYS = 366
DEFAULT_DAYS = 30


class PercentileCont(Aggregate):
    """PostgreSQL's median: PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY expr)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"


@dataclass
class Filters:
    organization: object
    workflow_id: int | None
    start: date
    end: date  # inclusive

    @property
    def tz(self) -> str:
        return self.organization.timezone

    def bounds(self) -> tuple[datetime, datetime]:
        zone = timefmt.zone(self.tz)
        return (
            datetime.combine(self.start, time.min, tzinfo=zone),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=zone),
        )

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def parse_day(raw: str | None) -> date | None:
    """A YYYY-MM-DD day between 2000 and 2999, else None (never an overflow further on)."""
    try:
        day = date.fromisoformat(raw) if raw and len(raw) == 10 else None
    except ValueError:
        return None
    return day if day is not None and 2000 <= day.year < 3000 else None


def make_filters(organization, workflow_ids: set[int], params, today: date) -> tuple[Filters, list[str]]:
    """Filters from query parameters; bad values fall back to defaults with a note."""
    notes = []
    raw_wf = params.get("workflow", "")
    workflow_id = int(raw_wf) if raw_wf.isdigit() and int(raw_wf) in workflow_ids else None
    if raw_wf and workflow_id is None:
        notes.append("Unknown workflow: showing all workflows.")
    end = parse_day(params.get("to")) or today
    start = parse_day(params.get("from")) or end - timedelta(days=DEFAULT_DAYS - 1)
    if params.get("from") and parse_day(params.get("from")) is None or params.get("to") and parse_day(params.get("to")) is None:
        notes.append("Dates are YYYY-MM-DD: showing the last 30 days.")
    if start > end:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
        notes.append(f"At most {MAX_DAYS} days at once.")
    return Filters(organization, workflow_id, start, end), notes


def calls_in(filters: Filters) -> QuerySet[CallSession]:
    lo, hi = filters.bounds()
    qs = CallSession.objects.filter(organization=filters.organization, created_at__gte=lo, created_at__lt=hi)
    if filters.workflow_id:
        qs = qs.filter(workflow_id=filters.workflow_id)
    return qs


def _median(qs: QuerySet, expr, output_field, count: int):
    """The median of ``expr`` over ``qs``, in one query (also when there are no rows,
    so the page's query count does not depend on the data)."""
    if connection.vendor == "postgresql":
        return qs.aggregate(m=PercentileCont(expr, output_field=output_field))["m"]
    # Elsewhere: the middle row of an ordered scan (the lower middle for an even count).
    middle = max(count - 1, 0) // 2
    values = list(qs.annotate(_v=expr).order_by("_v").values_list("_v", flat=True)[middle:middle + 1])
    return values[0] if values and count else None


def _duration_s():
    """Seconds from answer to end, computed natively by the database."""
    if connection.vendor == "sqlite":
        # Django's portable datetime difference is a Python function per row on SQLite.
        julian = lambda name: Func(F(name), function="julianday", output_field=FloatField())  # noqa: E731
        return ExpressionWrapper((julian("ended_at") - julian("answered_at")) * 86400.0, output_field=FloatField())
    return ExpressionWrapper(F("ended_at") - F("answered_at"), output_field=DurationField())


def _whole_hour_zone(filters: Filters) -> bool:
    zone = timefmt.zone(filters.tz)
    lo, hi = filters.bounds()
    return all(zone.utcoffset(t.replace(tzinfo=None)).total_seconds() % 3600 == 0 for t in (lo, hi))


FINAL = [str(s) for s in FINAL_STATUSES]
TIMED = Q(answered_at__isnull=False, ended_at__isnull=False)
# Besides the count per (day, status), the same scan counts what the totals need.
EXTRA_COUNTS = {
    "dialled": Count("pk", filter=Q(direction="dial_out", status__in=FINAL)),
    "answered": Count("pk", filter=Q(direction="dial_out", status__in=FINAL, answered_at__isnull=False)),
    "timed": Count("pk", filter=TIMED),
}


def _outcomes_in_scan(filters: Filters) -> bool:
    """Whether ``_counts_per_day`` also groups by workflow and outcome result."""
    return not (connection.vendor == "sqlite" and _whole_hour_zone(filters))


def _counts_per_day(qs: QuerySet, filters: Filters) -> list[dict]:
    """{day (in the organisation's zone), status, n, dialled, answered, timed} rows:
    one scan of the period's calls, aggregated by the database."""
    zone = timefmt.zone(filters.tz)
    if not _outcomes_in_scan(filters):
        # SQLite converts zones through a Python function per row; group by the UTC
        # hour natively (the stored text's first 13 characters) and map hours to days here.
        hour = Substr(Cast("created_at", CharField()), 1, 13)
        merged: dict[tuple, dict] = {}
        for row in qs.annotate(h=hour).values("h", "status").annotate(n=Count("pk"), **EXTRA_COUNTS).order_by():
            at = datetime.strptime(row["h"], "%Y-%m-%d %H").replace(tzinfo=dt_timezone.utc)
            key = (at.astimezone(zone).date(), row["status"])
            into = merged.setdefault(key, {"day": key[0], "status": key[1], "n": 0, "dialled": 0, "answered": 0, "timed": 0})
            for name in ("n", "dialled", "answered", "timed"):
                into[name] += row[name]
        return list(merged.values())
    # Elsewhere the zone conversion is native, and the same scan also groups the
    # outcomes per workflow (a few rows per day), saving a second pass over the calls.
    return list(
        qs.annotate(day=TruncDate("created_at", tzinfo=zone), result=KT("outcome__result"))
        .values("day", "status", "workflow_id", "result")
        .annotate(n=Count("pk"), has_outcome=Count("pk", filter=Q(outcome__isnull=False)), **EXTRA_COUNTS)
        .order_by()
    )


@dataclass
class Figures:
    total: int = 0
    per_day: list[dict] = field(default_factory=list)  # {day, counts: {status: n}, total}
    statuses: list[tuple[str, str]] = field(default_factory=list)  # statuses present, in order
    answered: int = 0
    dialled: int = 0
    answer_rate: float | None = None
    outcomes: list[dict] = field(default_factory=list)  # {workflow, results: [(result, n)], total}
    median_duration_s: float | None = None
    median_turn_ms: float | None = None
    turns_measured: int = 0


def figures(filters: Filters, workflows: dict[int, str]) -> Figures:
    qs = calls_in(filters)
    out = Figures()

    # 1. calls per day (in the organisation's zone) by status
    rows = _counts_per_day(qs, filters)
    by_day: dict[date, dict[str, int]] = {}
    present = set()
    for row in rows:
        counts = by_day.setdefault(row["day"], {})
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        present.add(row["status"])
    out.statuses = [(s.value, s.label) for s in CallStatus if s.value in present]
    for day in filters.days():
        counts = by_day.get(day, {})
        out.per_day.append({"day": day, "counts": counts, "total": sum(counts.values())})

    # 2. totals (from the same rows): answer rate of finished dial-out calls; how many durations
    totals = {name: sum(row[name] for row in rows) for name in ("n", "dialled", "answered", "timed")}
    out.total, out.dialled, out.answered = totals["n"], totals["dialled"], totals["answered"]
    out.answer_rate = out.answered / out.dialled if out.dialled else None

    # 3. outcome results per workflow
    results: dict[int, dict[str, int]] = {}
    if _outcomes_in_scan(filters):
        outcome_rows = [{**row, "n": row["has_outcome"]} for row in rows if row["has_outcome"]]
    else:
        outcome_rows = (
            qs.filter(outcome__isnull=False).values("workflow_id", result=KT("outcome__result"))
            .annotate(n=Count("pk")).order_by()
        )
    for row in outcome_rows:
        per_wf = results.setdefault(row["workflow_id"], {})
        key = row["result"] or "(none)"
        per_wf[key] = per_wf.get(key, 0) + row["n"]
    for wf_id, counts in sorted(results.items(), key=lambda kv: workflows.get(kv[0], "")):
        pairs = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out.outcomes.append({"workflow": workflows.get(wf_id, f"#{wf_id}"), "results": pairs,
                             "total": sum(counts.values())})

    # 4. median duration (answer → end)
    duration = _duration_s()
    median = _median(qs.filter(TIMED), duration, duration.output_field, totals["timed"])
    if isinstance(median, timedelta):
        out.median_duration_s = median.total_seconds()
    elif median is not None:
        out.median_duration_s = float(median)

    # 5. median bot turn latency, from the bots' `metrics` events
    # Joined (not ``call__in`` a subquery), and bounded by the events' own indexed time:
    # a call's events come after it was created.
    lo, hi = filters.bounds()
    events = CallEvent.objects.filter(
        kind="metrics", at__gte=lo, call__organization=filters.organization,
        call__created_at__gte=lo, call__created_at__lt=hi, data__has_key="turn_ms",
    )
    if filters.workflow_id:
        events = events.filter(call__workflow_id=filters.workflow_id)
    turn = Cast(KT("data__turn_ms"), FloatField())
    out.turns_measured = events.count()
    value = _median(events, turn, FloatField(), out.turns_measured)
    out.median_turn_ms = float(value) if value is not None else None
    return out


# --- the CSV export ------------------------------------------------------------------

CSV_COLUMNS = [
    "session_id", "created_at", "timezone", "workflow", "direction", "status", "end_reason", "outcome_result",
    "attempts", "duration_s", "patient_external_id", "patient_name", "patient_phone",
]
CSV_PHI_COLUMNS = ["outcome_notes", "transcript"]


class _Echo:
    def write(self, value):
        return value


def export_rows(filters: Filters, sees_phi: bool):
    """CSV lines of the filtered calls, shaped for the role: a viewer's names and
    phones are masked and carry no notes or transcripts (streamed; one query)."""
    writer = csv.writer(_Echo())
    columns = CSV_COLUMNS + (CSV_PHI_COLUMNS if sees_phi else [])
    yield writer.writerow(columns)
    fields = ["pk", "created_at", "workflow__slug", "direction", "status", "end_reason", "outcome",
              "dialout_attempts", "answered_at", "ended_at", "from_number", "to_number",
              "patient__external_id", "patient__first_name", "patient__last_name"]
    if sees_phi:
        fields.append("transcript")
    tz = filters.tz
    for row in calls_in(filters).order_by("-created_at").values(*fields).iterator(chunk_size=2000):
        phone = row["to_number"] if row["direction"] == "dial_out" else row["from_number"]
        outcome = row["outcome"] if isinstance(row["outcome"], dict) else {}
        duration = ""
        if row["answered_at"] and row["ended_at"]:
            duration = int((row["ended_at"] - row["answered_at"]).total_seconds())
        if row["patient__first_name"] is not None:
            first, last = row["patient__first_name"], row["patient__last_name"]
            name = " ".join(p for p in (first, last) if p) if sees_phi else mask_name(first, last)
        else:
            name = ""
        values = [
            row["pk"], timefmt.in_zone(row["created_at"], tz, "%Y-%m-%d %H:%M:%S"), tz, row["workflow__slug"],
            row["direction"], row["status"], row["end_reason"], outcome.get("result") or "",
            row["dialout_attempts"], duration, row["patient__external_id"] or "", name,
            phone if sees_phi else mask_phone(phone),
        ]
        if sees_phi:
            lines = row["transcript"] or []
            values += [
                outcome.get("notes") or "",
                "\n".join(f"{l.get('role')}: {l.get('text')}" for l in lines if isinstance(l, dict)),
            ]
        yield writer.writerow([_safe_cell(v) for v in values])


def _safe_cell(value):
    """No spreadsheet formulas from call data (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") and not value[1:2].isdigit():
        return "'" + value
    return value
