"""The dashboard's roll-ups: finished calls per day (``CallDay``) and bot turn
latencies per day (``TurnCount``: how many turns took each value; ``TurnBand``:
how many fell in each band of ``BAND_MS``), so the dashboard reads a few rows per
day instead of every call and every ``metrics`` event (calls.reports).

A "day" is the day of the call's ``created_at`` in its organisation's zone, as on
the dashboard. Every write is one ``INSERT … SELECT`` built from the calls (or
events) with the expressions the dashboard used to group the calls themselves by
(the day in the zone as ``TruncDate`` gives it, the outcome's ``result`` as text,
the same counts), so the roll-up says what that scan said — grouped over a whole
organisation for a rebuild, over one call or event (adding to the existing row,
``ON CONFLICT … DO UPDATE``) for an update:

- ``count_call``: ``calls.state.transition``, in the transaction that makes a call
  final (exactly once per call). Calls not yet final are not in ``CallDay``: the
  dashboard counts them from the calls (few, and indexed by status). A late
  ``outcome`` on a final call (``calls.events.apply_bot_message``) takes the call
  out (``sign=-1``) before the outcome changes and counts it again after.
- ``count_turn``: a ``metrics`` event is saved (``post_save``, whoever saves it),
  final call or not. Counted: a ``turn_ms`` that is a JSON number under
  ``TURN_MAX_MS`` either way (the call page too shows numbers only).
- ``rebuild``: an organisation's zone changes (its days move), the migration that
  created the tables, and ``manage.py rebuild_call_days`` (after rows were written
  around these paths: ``bulk_create``, a restore, SQL by hand).

A final call's counted fields (``created_at``, ``workflow``, ``status``,
``direction``, ``answered_at``, ``ended_at``, ``outcome``) change nowhere else;
calls are never deleted one by one (the admin cannot), and an organisation's
deletion takes its roll-up rows with it (foreign keys).

On PostgreSQL each writer holds a shared advisory lock on its organisation, and
``rebuild`` an exclusive one, taken before the zone is read: a call that ends while
its organisation's zone changes is counted once, on the right day. (Lock order:
a writer may hold the organisation's row lock before it, never after it.)
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from django.db import connection, transaction
from django.db.models import (
    Case, CharField, Count, DateField, F, FloatField, Func, IntegerField, Q, Sum, Value, When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Floor, Substr
from django.db.models.signals import post_save, pre_save

from organizations.models import Organization

from .models import FINAL_STATUSES, CallDay, CallEvent, CallSession, TurnBand, TurnCount

FINAL = [str(s) for s in FINAL_STATUSES]
RESULT_MAX = 255  # CallDay.result
BAND_MS = 100  # the width of a TurnBand
TURN_MAX_MS = 1e9  # a larger turn_ms (11 days) is not a measurement: not counted
_LOCK_SPACE = 0x6D79_6461  # the advisory locks' first key ("myda"); the second is the organisation
CURRENT = SimpleNamespace(CallSession=CallSession, CallEvent=CallEvent, CallDay=CallDay, TurnCount=TurnCount,
                          TurnBand=TurnBand, Organization=Organization)


class TurnMs(Func):
    """A metrics event's ``turn_ms`` when it is a JSON number smaller than
    ``TURN_MAX_MS`` either way, else NULL. In ``CASE``s, so that nothing but such a
    number is ever cast (PostgreSQL does not promise the order of ``AND``ed tests;
    a string, or a number too large for a float, would make the cast fail)."""

    output_field = FloatField()

    def __init__(self):
        super().__init__(F("data"))

    def as_postgresql(self, compiler, conn, **extra):
        data, params = compiler.compile(self.get_source_expressions()[0])
        text = f"({data} ->> 'turn_ms')"
        # The bound is a literal: compared as numeric, never cast to a float itself.
        sql = (f"CASE WHEN jsonb_typeof({data} -> 'turn_ms') = 'number' THEN "
               f"CASE WHEN abs({text}::numeric) < {int(TURN_MAX_MS)} THEN {text}::double precision END END")
        return sql, (*params, *params, *params)

    def as_sqlite(self, compiler, conn, **extra):
        data, params = compiler.compile(self.get_source_expressions()[0])
        value = f"json_extract({data}, '$.turn_ms')"
        sql = (f"CASE WHEN json_type({data}, '$.turn_ms') IN ('integer', 'real') THEN "
               f"CASE WHEN abs({value}) < {int(TURN_MAX_MS)} THEN CAST({value} AS REAL) END END")
        return sql, (*params, *params, *params)


class LocalDate(Func):
    """The date of ``when`` in the zone named by the column ``zone`` (the organisation's):
    what ``TruncDate(when, tzinfo=<that zone>)`` gives, the zone read by the statement
    itself (so by every statement after the writer's lock)."""

    output_field = DateField()

    def __init__(self, when: str, zone: str):
        super().__init__(F(when), F(zone))

    def as_postgresql(self, compiler, conn, **extra):
        (when, p1), (zone, p2) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"(({when}) AT TIME ZONE ({zone}))::date", (*p1, *p2)

    def as_sqlite(self, compiler, conn, **extra):
        (when, p1), (zone, p2) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"django_datetime_cast_date({when}, {zone}, %s)", (*p1, *p2, conn.timezone_name)


# --- the rows, as the dashboard groups calls ------------------------------------------------


def result_text():
    """The outcome's result as the dashboard groups calls by it: its text (JSON text
    for a number or ``true``), at most ``RESULT_MAX`` characters; "" when there is no
    outcome or no result — a JSON ``null`` too (which SQLite would spell 'null')."""
    return Case(
        When(outcome__result=None, then=Value("")),
        default=Coalesce(Substr(KT("outcome__result"), 1, RESULT_MAX), Value("")),
        output_field=CharField(),
    )



# The answer rate's two sides, one definition for the roll-up and the live count:
# a dial-out the bot really dialled (a dial attempt, an answer, or the line's own
# "no answer"/"busy"), not one canceled before it rang or that never got a bot; and
# of those, the ones a person answered (voicemail picked up the line, not a person).
DIALLED = Q(direction="dial_out") & (
    Q(dialout_attempts__gt=0) | Q(answered_at__isnull=False) | Q(status__in=["no_answer", "busy"])
)
ANSWERED_BY_PERSON = DIALLED & Q(answered_at__isnull=False) & ~Q(end_reason="voicemail")


def _call_rows(calls, sign: int = 1):
    """CallDay rows (organization_id, workflow_id, status, day, result and the counts) of
    these final calls."""
    def counted(condition=None):
        count = Count("pk", filter=condition)
        return count if sign == 1 else count * Value(sign)

    return (
        calls.filter(status__in=FINAL)
        .annotate(day=LocalDate("created_at", "organization__timezone"), result=result_text())
        .values("organization_id", "workflow_id", "status", "day", "result")
        .annotate(
            calls=counted(),
            with_outcome=counted(Q(outcome__isnull=False)),
            dial_outs=counted(Q(direction="dial_out")),
            dialled=counted(DIALLED),
            answered=counted(ANSWERED_BY_PERSON),
            timed=counted(Q(answered_at__isnull=False, ended_at__isnull=False)),
        )
        .order_by()
    )


def _turns(events):
    """These metrics events' turn latencies that count, with their call's organisation,
    workflow and day."""
    return (
        events.filter(kind="metrics")
        .annotate(value=TurnMs())
        .filter(value__isnull=False)
        .annotate(organization_id=F("call__organization_id"), workflow_id=F("call__workflow_id"),
                  day=LocalDate("call__created_at", "call__organization__timezone"),
                  band=Cast(Floor(F("value") / Value(float(BAND_MS))), IntegerField()))
    )


def _turn_rows(events):
    return _turns(events).values("organization_id", "workflow_id", "day", "value", "band").annotate(
        n=Count("pk")).order_by()


def _band_rows(events):
    return _turns(events).values("organization_id", "workflow_id", "day", "band").annotate(
        n=Count("pk")).order_by()


def is_turn(data) -> bool:
    """Whether a metrics event's data carries a turn latency ``_turns`` counts: the
    same test in Python, so other events cost no query (and a NaN, which SQLite's
    JSON functions refuse, never reaches them)."""
    value = data.get("turn_ms") if isinstance(data, dict) else None
    # abs(...) < TURN_MAX_MS is False for NaN, infinities and huge integers alike.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < TURN_MAX_MS


# --- writing them ----------------------------------------------------------------------------


def _insert_sql(model, rows, conflict: tuple[str, ...] | None = None, add: tuple[str, ...] = ()):
    """``INSERT INTO`` the model's table what ``rows`` selects (its columns named as the
    table's); with ``conflict``, an existing row gets the ``add`` columns added.
    Returns (sql, params)."""
    q = connection.ops.quote_name
    compiler = rows.query.get_compiler(connection=connection)
    select_sql, params = compiler.as_sql()
    columns = [alias or expr.target.column for expr, _sql, alias in compiler.select]
    table = q(model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(q(c) for c in columns)}) {select_sql}"
    if conflict:
        keys = [model._meta.get_field(name).column for name in conflict]
        sql += (f" ON CONFLICT ({', '.join(q(c) for c in keys)}) DO UPDATE SET "
                + ", ".join(f"{q(c)} = {table}.{q(c)} + excluded.{q(c)}" for c in add))
    return sql, tuple(params)


def _execute(sql, params) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params)


# Building and compiling these statements costs more than running them (milliseconds
# of Python on every call's end): each is compiled once per process and database,
# for a stand-in id, and run with the real one in its place.
_COMPILED: dict[tuple, tuple[str, tuple, int]] = {}
_STAND_IN = {CallSession: uuid.UUID(int=1), CallEvent: -7_340_017_730}  # never a real id


def _run_for_one(name: str, source, ident, build) -> None:
    """Run the statements ``build(queryset of the one row)`` returns for the row ``ident``."""
    pk = source._meta.pk
    for i, (model, rows_of, conflict, add) in enumerate(build):
        key = (connection.alias, connection.vendor, name, i)
        compiled = _COMPILED.get(key)
        if compiled is None:
            stand_in = _STAND_IN[source]
            sql, params = _insert_sql(model, rows_of(source.objects.filter(pk=stand_in)), conflict, add)
            slots = [n for n, p in enumerate(params) if p == pk.get_db_prep_value(stand_in, connection)]
            if len(slots) != 1:  # the id must be findable: build it each time instead
                sql, params = _insert_sql(model, rows_of(source.objects.filter(pk=ident)), conflict, add)
                _execute(sql, params)
                continue
            compiled = _COMPILED[key] = (sql, params, slots[0])
        sql, params, slot = compiled
        params = list(params)
        params[slot] = pk.get_db_prep_value(ident, connection)
        _execute(sql, params)


def _lock(organization_id: int, exclusive: bool = False) -> None:
    """The organisation's advisory lock until the transaction ends (PostgreSQL; SQLite
    writers are serialised anyway)."""
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    _execute(f"SELECT {fn}(%s, %s)", [_LOCK_SPACE, organization_id % 2**31])


CALL_DAY_KEY = ("organization", "day", "workflow", "status", "result")
CALL_DAY_COUNTS = ("calls", "with_outcome", "dial_outs", "dialled", "answered", "timed")
_COUNT_CALL = [(CallDay, _call_rows, CALL_DAY_KEY, CALL_DAY_COUNTS)]
_UNCOUNT_CALL = [(CallDay, lambda calls: _call_rows(calls, sign=-1), CALL_DAY_KEY, CALL_DAY_COUNTS)]
_COUNT_TURN = [
    (TurnCount, _turn_rows, ("organization", "day", "workflow", "value"), ("n",)),
    (TurnBand, _band_rows, ("organization", "day", "workflow", "band"), ("n",)),
]


def count_call(call_id, sign: int = 1) -> None:
    """Count the call, if final, in its day's row (``sign=-1``: take it out). In the
    transaction of the change: one statement (two more on PostgreSQL: the organisation's
    id, and its lock)."""
    with transaction.atomic(savepoint=False):  # the lock lasts until the transaction ends
        if connection.vendor == "postgresql":
            org_id = CallSession.objects.filter(pk=call_id).values_list("organization_id", flat=True).first()
            if org_id is None:
                return
            _lock(org_id)
        _run_for_one("call" if sign == 1 else "uncall", CallSession, call_id,
                     _COUNT_CALL if sign == 1 else _UNCOUNT_CALL)


def count_turn(event_id) -> None:
    """Count a metrics event's turn latency in its call's day: two statements (two more
    on PostgreSQL: the organisation's id, and its lock)."""
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            org_id = CallEvent.objects.filter(pk=event_id).values_list("call__organization_id", flat=True).first()
            if org_id is None:
                return
            _lock(org_id)
        _run_for_one("turn", CallEvent, event_id, _COUNT_TURN)


def rebuild(organization_id: int, models=CURRENT) -> None:
    """Recount an organisation's roll-ups from its calls and events, in the database
    (one transaction). ``models``: the migration passes its own."""
    M = models
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _lock(organization_id, exclusive=True)
        for model in (M.CallDay, M.TurnCount, M.TurnBand):
            model.objects.filter(organization_id=organization_id).delete()
        _execute(*_insert_sql(M.CallDay, _call_rows(M.CallSession.objects.filter(organization_id=organization_id))))
        events = M.CallEvent.objects.filter(call__organization_id=organization_id)
        _execute(*_insert_sql(M.TurnCount, _turn_rows(events)))
        _execute(*_insert_sql(M.TurnBand, _band_rows(events)))


def totals(organization_id: int) -> dict[str, int]:
    """How many final calls and turns the roll-ups hold for an organisation."""
    return {
        "calls": CallDay.objects.filter(organization_id=organization_id).aggregate(n=Sum("calls"))["n"] or 0,
        "turns": TurnCount.objects.filter(organization_id=organization_id).aggregate(n=Sum("n"))["n"] or 0,
        "banded": TurnBand.objects.filter(organization_id=organization_id).aggregate(n=Sum("n"))["n"] or 0,
    }


def recount(organization_id: int) -> dict[str, int]:
    """The same, counted from the calls and events (``manage.py rebuild_call_days --check``)."""
    turns = _turns(CallEvent.objects.filter(call__organization_id=organization_id)).count()
    calls = CallSession.objects.filter(organization_id=organization_id, status__in=FINAL).count()
    return {"calls": calls, "turns": turns, "banded": turns}


# --- signals -----------------------------------------------------------------------------


def _event_saved(sender, instance, created=False, raw=False, **kwargs):
    if created and not raw and instance.kind == "metrics" and is_turn(instance.data):
        count_turn(instance.pk)


def _organization_saving(sender, instance, raw=False, update_fields=None, **kwargs):
    instance._rollup_zone_changed = False
    if raw or instance.pk is None or (update_fields is not None and "timezone" not in update_fields):
        return
    before = Organization.objects.filter(pk=instance.pk).values_list("timezone", flat=True).first()
    instance._rollup_zone_changed = before is not None and before != instance.timezone


def _organization_saved(sender, instance, created=False, raw=False, **kwargs):
    if getattr(instance, "_rollup_zone_changed", False):
        instance._rollup_zone_changed = False
        rebuild(instance.pk)  # its days are other days now


def connect_signals() -> None:
    post_save.connect(_event_saved, sender=CallEvent, dispatch_uid="rollup-event-saved")
    pre_save.connect(_organization_saving, sender=Organization, dispatch_uid="rollup-org-saving")
    post_save.connect(_organization_saved, sender=Organization, dispatch_uid="rollup-org-saved")
