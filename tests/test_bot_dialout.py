"""DialoutManager: attempts, backoff, the start_dialout error path, giving up."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from botkit.dialout import DialoutManager, classify_failure, safe_daily_data  # noqa: E402


class FakeReporter:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def send(self, event, data=None):
        self.sent.append((event, dict(data or {})))
        return len(self.sent)

    def events(self, name=None):
        return [d for e, d in self.sent if e == name] if name else [e for e, _ in self.sent]


class FakeTransport:
    """Only ``start_dialout``; each call returns the next scripted ``(session_id, error)``."""

    def __init__(self, results=None):
        self.results = list(results or [])
        self.calls: list[dict] = []

    async def start_dialout(self, settings=None):
        self.calls.append(settings)
        n = len(self.calls)
        if self.results:
            result = self.results.pop(0)
            if isinstance(result, Exception):
                raise result
            return result
        return f"session-{n}", None


class Sleeps:
    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay):
        self.delays.append(delay)


def make(transport, *, max_attempts=5, caller_id=None, backoff=(1.0, 2.0, 4.0)):
    reporter = FakeReporter()
    sleeps = Sleeps()
    gave_up: list[str] = []

    async def on_give_up(reason):
        gave_up.append(reason)

    manager = DialoutManager(
        transport,
        reporter,
        phone_number="+15550001111",
        caller_id=caller_id,
        max_attempts=max_attempts,
        on_give_up=on_give_up,
        backoff=backoff,
        sleep=sleeps,
    )
    return manager, reporter, sleeps, gave_up


async def test_first_attempt_dials_the_number_and_answer_stops_retries():
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport, caller_id="+15559990000")
    await manager.start()
    await manager.start()  # a second on_joined does not dial again
    assert transport.calls == [{"phoneNumber": "+15550001111", "callerId": "+15559990000"}]
    assert reporter.events("dialout_attempt") == [{"attempt": 1, "max_attempts": 5}]

    await manager.handle_answered({"sessionId": "session-1"})
    assert manager.answered
    await manager.handle_error({"sessionId": "session-1", "errorMsg": "late"})
    assert len(transport.calls) == 1
    assert sleeps.delays == [] and gave_up == []
    assert reporter.events("dialout_answered") == [{"attempt": 1, "sessionId": "session-1"}]


async def test_no_caller_id_means_no_caller_id_key():
    transport = FakeTransport()
    manager, *_ = make(transport)
    await manager.start()
    assert transport.calls == [{"phoneNumber": "+15550001111"}]


async def test_dialout_errors_retry_with_backoff_until_answered():
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    await manager.start()
    await manager.handle_error({"sessionId": "session-1", "errorMsg": "sip 503"})
    await manager.handle_error({"sessionId": "session-2", "errorMsg": "sip 503"})
    await manager.handle_answered({"sessionId": "session-3"})

    assert len(transport.calls) == 3
    assert sleeps.delays == [1.0, 2.0]  # no real sleeping
    assert [d["attempt"] for d in reporter.events("dialout_attempt")] == [1, 2, 3]
    assert [d["attempt"] for d in reporter.events("dialout_error")] == [1, 2]
    assert reporter.events("dialout_error")[0]["errorMsg"] == "sip 503"
    assert manager.answered and gave_up == []


async def test_start_dialout_error_is_treated_like_an_error_event():
    transport = FakeTransport([(None, "invalid number"), ("session-2", None)])
    manager, reporter, sleeps, gave_up = make(transport)
    await manager.start()
    assert len(transport.calls) == 2
    assert sleeps.delays == [1.0]
    assert reporter.events("dialout_error") == [{"attempt": 1, "kind": "technical", "error": "invalid number"}]
    assert manager.session_id == "session-2"


async def test_a_raising_start_dialout_counts_as_a_failed_attempt():
    transport = FakeTransport([RuntimeError("boom"), ("session-2", None)])
    manager, reporter, sleeps, _ = make(transport)
    await manager.start()
    assert len(transport.calls) == 2
    assert "boom" in reporter.events("dialout_error")[0]["error"]


async def test_both_error_paths_for_one_attempt_retry_once():
    # start_dialout returns an error AND Daily sends on_dialout_error for the same session.
    transport = FakeTransport([("session-1", "no route"), ("session-2", None)])
    manager, reporter, sleeps, _ = make(transport)
    await manager.start()
    await manager.handle_error({"sessionId": "session-1", "errorMsg": "SDP negotiation failed"})
    assert len(transport.calls) == 2
    assert sleeps.delays == [1.0]
    assert len(reporter.events("dialout_error")) == 2  # every error reported...
    assert manager.attempt == 2  # ...but one retry


async def test_stale_error_of_an_earlier_attempt_is_ignored():
    transport = FakeTransport()
    manager, reporter, sleeps, _ = make(transport)
    await manager.start()
    await manager.handle_error({"sessionId": "session-1"})
    assert manager.attempt == 2
    await manager.handle_error({"sessionId": "session-1"})  # late duplicate for attempt 1
    assert manager.attempt == 2
    assert len(transport.calls) == 2


async def test_gives_up_after_max_attempts():
    transport = FakeTransport([(None, "SIP 503 Service Unavailable")] * 10)
    manager, reporter, sleeps, gave_up = make(transport, max_attempts=3)
    await manager.start()
    assert len(transport.calls) == 3
    assert sleeps.delays == [1.0, 2.0]  # no wait after the last attempt
    assert gave_up == ["dialout_failed"]
    assert manager.finished and manager.gave_up_reason == "dialout_failed"
    assert reporter.events("dialout_attempt") == [
        {"attempt": n, "max_attempts": 3} for n in (1, 2, 3)
    ]
    assert [d["attempt"] for d in reporter.events("dialout_error")] == [1, 2, 3]
    # Nothing more happens after giving up.
    await manager.handle_error({"errorMsg": "late"})
    assert len(transport.calls) == 3 and gave_up == ["dialout_failed"]


async def test_backoff_uses_last_value_when_attempts_outnumber_it():
    transport = FakeTransport([(None, "x")] * 10)
    manager, _, sleeps, gave_up = make(transport, max_attempts=5, backoff=(0.5, 1.5))
    await manager.start()
    assert sleeps.delays == [0.5, 1.5, 1.5, 1.5]
    assert gave_up == ["dialout_failed"]


async def test_stopped_before_answer_ends_as_no_answer():
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    await manager.start()
    await manager.handle_stopped({"sessionId": "session-1"})
    await asyncio.gather(*manager._tasks)  # the grace period (slept at once here) for a late error
    assert gave_up == ["no_answer"]
    assert reporter.events("dialout_stopped") == [{"sessionId": "session-1"}]
    assert len(transport.calls) == 1


async def test_stopped_then_a_technical_error_is_redialled_not_no_answer():
    # Daily may send dialout-stopped before the dialout-error of the same attempt.
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    manager._stop_grace_s = 5.0
    waits: list[float] = []

    async def grace(delay):
        waits.append(delay)
        await manager.handle_error({"sessionId": "session-1", "errorMsg": "SIP 503 Service Unavailable"})

    manager._sleep = grace
    await manager.start()
    await manager.handle_stopped({"sessionId": "session-1"})
    await asyncio.gather(*manager._tasks)
    assert gave_up == [] and len(transport.calls) == 2
    assert manager.failures == ["technical"]


@pytest.mark.parametrize("payload, kind", [
    ({"errorMsg": "SIP 486 Busy Here"}, "busy"),
    ({"errorMsg": "busy"}, "busy"),
    ({"errorMsg": "failed", "sipCode": 600}, "busy"),
    ({"errorMsg": "Call declined by callee (603)"}, "declined"),
    ({"errorMsg": "call rejected"}, "declined"),
    ({"errorMsg": "480 Temporarily Unavailable"}, "no_answer"),
    ({"errorMsg": "no answer"}, "no_answer"),
    ({"errorMsg": "487 Request Terminated"}, "no_answer"),
    ({"errorMsg": "SIP 503 Service Unavailable"}, "technical"),
    ({"errorMsg": "no route to destination"}, "technical"),
    ({"errorMsg": "SDP negotiation failed"}, "technical"),
    ({}, "technical"),
    ("rate limited", "technical"),
])
def test_failures_are_classified(payload, kind):
    assert classify_failure(payload) == kind


@pytest.mark.parametrize("error, reason", [("486 Busy Here", "busy"), ("603 Decline", "declined"),
                                            ("480 Temporarily Unavailable", "no_answer")])
async def test_busy_declined_and_no_answer_are_not_redialled(error, reason):
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    await manager.start()
    await manager.handle_error({"sessionId": "session-1", "errorMsg": error})
    assert len(transport.calls) == 1 and sleeps.delays == []
    assert gave_up == [reason]


async def test_ring_timeout_ends_as_no_answer():
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    manager.ring_timeout_s = 45
    rang: list[float] = []

    async def ring_sleep(delay):
        rang.append(delay)

    manager._ring_sleep = ring_sleep
    await manager.start()
    await asyncio.gather(*manager._tasks)
    assert rang == [45] and gave_up == ["no_answer"]


async def test_stopped_after_answer_is_just_reported():
    transport = FakeTransport()
    manager, reporter, sleeps, gave_up = make(transport)
    await manager.start()
    await manager.handle_answered({"sessionId": "session-1"})
    await manager.handle_stopped({"sessionId": "session-1"})
    assert gave_up == [] and not manager._tasks


async def test_stop_prevents_a_pending_retry():
    transport = FakeTransport([(None, "x"), ("session-2", None)])
    manager, _, sleeps, _ = make(transport)

    async def stop_while_sleeping(delay):
        manager.stop()

    manager._sleep = stop_while_sleeping
    await manager.start()
    assert len(transport.calls) == 1


@pytest.mark.parametrize("max_attempts", [0, None, -3])
async def test_at_least_one_attempt(max_attempts):
    transport = FakeTransport([(None, "x")])
    manager, _, _, gave_up = make(transport, max_attempts=max_attempts)
    await manager.start()
    assert len(transport.calls) == 1 and gave_up == ["dialout_failed"]


def test_safe_daily_data_keeps_no_caller_number():
    data = {"sessionId": "s", "sipFrom": "sip:+15551234567@x", "errorMsg": "fail +15551234567", "x": 1}
    safe = safe_daily_data(data)
    assert safe["sessionId"] == "s"
    assert "sipFrom" not in safe and "x" not in safe
    assert "5551234567" not in safe["errorMsg"]
