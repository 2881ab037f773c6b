"""The organisation's numbers (the dashboard) and the CSV export of its calls.

The dashboard's query count is constant (tests/test_dashboard.py,
``bench/queries.py``), and its queries read few rows:

- the counts per day, status, workflow and outcome result of the period's *final*
  calls come from the daily roll-up ``CallDay`` (calls.rollup: a few rows per day,
  kept by the state machine), those of the calls not yet final from the calls;
- the median duration from the calls, reading only an index of their times
  (``PERCENTILE_CONT`` on PostgreSQL, the middle row of an ordered scan elsewhere);
- the median bot turn latency from the roll-ups ``TurnBand`` (turns per 100 ms band
  and day: which band holds the middle) and ``TurnCount`` (how many turns took each
  value, read for that band only), computed here exactly as the database would.

Five queries for the figures, whatever the number of calls.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import connection
from django.db.models import (
    Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Func, Q, QuerySet, Sum,
)
from django.db.models.functions import TruncDate

from organizations import timefmt
from masking import mask_name, mask_phone

from . import rollup
from .models import ACTIVE_STATUSES, FINAL_STATUSES, CallDay, CallSession, CallStatus, TurnBand, TurnCount

log = logging.getLogger(__name__)

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


FINAL = [str(s) for s in FINAL_STATUSES]
ACTIVE = sorted(ACTIVE_STATUSES)
TIMED = Q(answered_at__isnull=False, ended_at__isnull=False)
COUNTS = ("n", "dialled", "answered", "timed")


def _finished_rows(filters: Filters) -> list[dict]:
    """{day, status, workflow_id, result, n, has_outcome, dialled, answered, timed} of
    the period's final calls: the roll-up (calls.rollup), a few rows per day."""
    rows = CallDay.objects.filter(
        organization=filters.organization, day__gte=filters.start, day__lte=filters.end, calls__gt=0,
    )
    if filters.workflow_id:
        rows = rows.filter(workflow_id=filters.workflow_id)
    fields = ("day", "status", "workflow_id", "result", "n", "has_outcome", "dialled", "answered", "timed")
    return [dict(zip(fields, row)) for row in rows.order_by().values_list(
        "day", "status", "workflow_id", "result", "calls", "with_outcome", "dialled", "answered", "timed",
    )]


def _active_rows(filters: Filters) -> list[dict]:
    """The same rows for the period's calls not yet final, from the calls themselves:
    they are few, found by the (organisation, status) index, and kept by their day in
    the zone — as the roll-up keeps the others (a bound on ``created_at`` would let
    SQLite's planner scan the period through the times index instead)."""
    zone = timefmt.zone(filters.tz)
    qs = CallSession.objects.filter(organization=filters.organization, status__in=ACTIVE)
    if filters.workflow_id:
        qs = qs.filter(workflow_id=filters.workflow_id)
    return list(
        qs.annotate(day=TruncDate("created_at", tzinfo=zone), result=rollup.result_text())
        .filter(day__gte=filters.start, day__lte=filters.end)
        .values("day", "status", "workflow_id", "result")
        .annotate(
            n=Count("pk"), has_outcome=Count("pk", filter=Q(outcome__isnull=False)),
            dialled=Count("pk", filter=Q(status__in=FINAL) & rollup.DIALLED),
            answered=Count("pk", filter=Q(status__in=FINAL) & rollup.ANSWERED_BY_PERSON),
            timed=Count("pk", filter=TIMED),
        )
        .order_by()
    )


def _middle_ranks(total: int) -> tuple[int, int, float]:
    """The ranks (0-based, in order) of the values the median is made of, and the
    weight of the second: as ``_median`` computes it on this database —
    PERCENTILE_CONT(0.5) on PostgreSQL (interpolated between the two middle values
    for an even count), the lower middle value elsewhere."""
    if connection.vendor != "postgresql":
        middle = (total - 1) // 2
        return middle, middle, 0.0
    position = 0.5 * (total - 1)
    return math.floor(position), math.ceil(position), position - math.floor(position)


def _median_of_counts(pairs, ranks: tuple[int, int, float], skip: int = 0) -> float:
    """The median from ``pairs`` of (value, how many), sorted by value, which hold the
    values of ranks ``skip`` onwards."""

    def nth(k: int) -> float:
        seen = skip
        for value, n in pairs:
            seen += n
            if k < seen:
                return value
        raise ValueError(f"rank {k} is not in the values read")

    lo_k, hi_k, weight = ranks
    lo = nth(lo_k)
    if hi_k == lo_k:
        return lo
    hi = nth(hi_k)
    return lo + (hi - lo) * weight  # as PostgreSQL interpolates


def _median_turn(filters: Filters) -> tuple[float | None, int]:
    """(median turn latency, turns measured) from the roll-up, in two small queries:
    the turns per band and day tell which band holds the middle ranks, then only that
    band's values are read (exact: how many turns took each value)."""
    def scoped(model):
        qs = model.objects.filter(organization=filters.organization, day__gte=filters.start, day__lte=filters.end)
        return qs.filter(workflow_id=filters.workflow_id) if filters.workflow_id else qs

    bands = list(scoped(TurnBand).values("band").annotate(turns=Sum("n")).order_by("band").values_list("band", "turns"))
    total = sum(n for _band, n in bands)
    first = last = None
    skip = 0
    if total:
        ranks = _middle_ranks(total)
        seen = 0
        for band, n in bands:
            if first is None and ranks[0] < seen + n:
                first, skip = band, seen
            if ranks[1] < seen + n:
                last = band
                break
            seen += n
    # Also when there are none, so the page's query count does not depend on the data.
    values = list(
        scoped(TurnCount).filter(band__gte=first if first is not None else 1, band__lte=last if last is not None else 0)
        .values("value").annotate(turns=Sum("n")).order_by("value").values_list("value", "turns")
    )
    if not total:
        return None, 0
    try:
        return _median_of_counts(values, ranks, skip), total
    except ValueError:  # TurnBand and TurnCount disagree: say so, show no median
        log.error("turn roll-ups of organisation %s disagree: run manage.py rebuild_call_days",
                  filters.organization.pk)
        return None, total


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

    # 1. calls per day (in the organisation's zone) by status: the final ones from
    # the roll-up, the others from the calls
    rows = _finished_rows(filters) + _active_rows(filters)
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
    totals = {name: sum(row[name] for row in rows) for name in COUNTS}
    out.total, out.dialled, out.answered = totals["n"], totals["dialled"], totals["answered"]
    out.answer_rate = out.answered / out.dialled if out.dialled else None

    # 3. outcome results per workflow (from the same rows)
    results: dict[int, dict[str, int]] = {}
    for row in rows:
        if not row["has_outcome"]:
            continue
        per_wf = results.setdefault(row["workflow_id"], {})
        key = row["result"] or "(none)"
        per_wf[key] = per_wf.get(key, 0) + row["has_outcome"]
    for wf_id, counts in sorted(results.items(), key=lambda kv: workflows.get(kv[0], "")):
        pairs = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out.outcomes.append({"workflow": workflows.get(wf_id, f"#{wf_id}"), "results": pairs,
                             "total": sum(counts.values())})

    # 4. median duration (answer → end): exact, from the calls, reading only the
    # (organisation, created_at, answered_at, ended_at) index
    duration = _duration_s()
    median = _median(qs.filter(TIMED), duration, duration.output_field, totals["timed"])
    if isinstance(median, timedelta):
        out.median_duration_s = median.total_seconds()
    elif median is not None:
        out.median_duration_s = float(median)

    # 5. median bot turn latency, from the roll-up of the bots' `metrics` events
    out.median_turn_ms, out.turns_measured = _median_turn(filters)
    return out


# --- the CSV export ------------------------------------------------------------------

CSV_COLUMNS = [
    "session_id", "created_at", "timezone", "workflow", "direction", "status", "end_reason", "consent_basis",
    "outcome_result",
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
    fields = ["pk", "created_at", "workflow__slug", "direction", "status", "end_reason", "consent_basis", "outcome",
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
            row["direction"], row["status"], row["end_reason"], row["consent_basis"], outcome.get("result") or "",
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


# What a spreadsheet may read as the start of a formula, also after leading blanks or
# control characters (a tab or CR before "=" is skipped by some of them).
_FORMULA_START = re.compile(r"^[\s\x00-\x1f]*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r\n]")
# What is left alone: a phone number (E.164, or masked: "+1••••••••23") and a plain number.
_PLAIN = re.compile(r"\+[0-9\u2022]{2,20}|-?[0-9]+(\.[0-9]+)?")


def _safe_cell(value):
    """No spreadsheet formulas from call data (CSV injection): a cell that could start one gets a leading '."""
    if isinstance(value, str) and _FORMULA_START.match(value) and not _PLAIN.fullmatch(value):
        return "'" + value
    return value
