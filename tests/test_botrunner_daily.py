"""botrunner.daily against FakeDaily over real HTTP."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from botrunner import daily
from botrunner.errors import MissingCredentialsError, PermanentError, TransientError
from tests.fakes.aio import closed_port_url, run_shared, run_with_session


def create(session_id=None, *, dialin=False, caller_phone=None, max_duration_s=600):
    session_id = session_id or str(uuid.uuid4())
    return run_shared(lambda http: daily.create_room(
        http, session_id=session_id, dialin=dialin, caller_phone=caller_phone, max_duration_s=max_duration_s))


# --- names ---------------------------------------------------------------------


def test_room_name_is_deterministic_and_valid():
    sid = str(uuid.uuid4())
    assert daily.room_name_for(sid) == daily.room_name_for(sid) == f"mr-{sid}"
    odd = daily.room_name_for("a b/c" + "x" * 300)
    assert len(odd) <= 128 and daily._VALID_NAME.match(odd)
    # lossy cleaning never makes two ids share a name
    assert daily.room_name_for("a b") != daily.room_name_for("a/b")
    with pytest.raises(ValueError):
        daily.room_name_for("")


# --- rooms ---------------------------------------------------------------------


def test_dialin_room_has_sip_dialin_for_the_caller(fake_daily, settings):
    settings.DAILY_ROOM_EXPIRY_MARGIN_S = 120
    sid = str(uuid.uuid4())
    before = time.time()
    room = create(sid, dialin=True, caller_phone="+15551230000", max_duration_s=600)

    [req] = fake_daily.requests_to("POST /rooms")
    assert req["headers"]["Authorization"] == f"Bearer {fake_daily.api_key}"
    body = req["json"]
    assert body["name"] == f"mr-{sid}" == room.name
    props = body["properties"]
    # The caller's number is nowhere in what Daily keeps (its dashboards show the display name).
    assert props["sip"] == {"display_name": "Caller", "video": False, "sip_mode": "dial-in", "num_endpoints": 1}
    assert "+15551230000" not in str(body)
    # A transfer to a person dials out of the caller's room.
    assert props["enable_dialout"] is True
    assert props["eject_at_room_exp"] is True and props["start_video_off"] is True
    assert before + 720 - 2 <= props["exp"] <= time.time() + 720 + 2
    assert room.url == f"https://{fake_daily.domain_name}.daily.co/{room.name}"
    assert room.sip_endpoint and room.sip_endpoint.startswith("sip:")
    assert room.exp == props["exp"] and room.created is True
    assert room.name in fake_daily.rooms


def test_dialout_room_enables_dialout(fake_daily):
    room = create(dialin=False)
    props = fake_daily.requests_to("POST /rooms")[0]["json"]["properties"]
    assert props["enable_dialout"] is True
    assert "sip" not in props
    assert room.sip_endpoint is None


def test_existing_room_is_found_not_duplicated(fake_daily):
    sid = str(uuid.uuid4())
    first = create(sid, dialin=True, caller_phone="+15551230000")
    again = create(sid, dialin=True, caller_phone="+15551230000")
    assert again.name == first.name and again.url == first.url
    assert again.sip_endpoint == first.sip_endpoint and again.exp == first.exp
    assert again.created is False
    assert len(fake_daily.rooms) == 1
    assert [f"{r['method']} {r['path']}" for r in fake_daily.requests if r["path"] != "/"] == [
        "POST /rooms", "POST /rooms", f"GET /rooms/{first.name}"]


def test_missing_api_key_names_the_variable(fake_daily, settings):
    settings.DAILY_API_KEY = ""
    with pytest.raises(MissingCredentialsError) as exc:
        create()
    assert exc.value.variable == "DAILY_API_KEY"
    assert "DAILY_API_KEY" in exc.value.reason
    assert fake_daily.requests == []


def test_wrong_api_key_is_permanent(fake_daily, settings):
    settings.DAILY_API_KEY = "not-the-key"
    with pytest.raises(PermanentError) as exc:
        create()
    assert exc.value.status == 401
    assert "DAILY_API_KEY" in exc.value.reason
    assert "authentication-error" in exc.value.body


@pytest.mark.parametrize("status", [429, 500, 503])
def test_room_creation_faults_are_transient_then_retry_succeeds(fake_daily, status):
    sid = str(uuid.uuid4())
    fake_daily.fail_next("POST /rooms", status)
    with pytest.raises(TransientError) as exc:
        create(sid)
    assert exc.value.status == status
    room = create(sid)  # the retry (same name) makes the room once
    assert list(fake_daily.rooms) == [room.name]


def test_room_creation_invalid_request_is_permanent(fake_daily):
    fake_daily.fail_next("POST /rooms", 400, json={"error": "invalid-request-error", "info": "exp is in the past"})
    with pytest.raises(PermanentError) as exc:
        create()
    assert exc.value.status == 400 and "exp is in the past" in exc.value.reason


def test_unreachable_daily_is_transient(settings, fake_daily):
    settings.DAILY_API_URL = closed_port_url() + "/v1"
    with pytest.raises(TransientError) as exc:
        create()
    assert "Could not reach Daily" in exc.value.reason


def test_daily_timeout_is_transient(fake_daily):
    fake_daily.hang_s = 2
    fake_daily.hang_next("POST /rooms")
    with pytest.raises(TransientError):
        run_with_session(lambda http: daily.create_room(
            http, session_id=str(uuid.uuid4()), dialin=False, max_duration_s=60), total=0.3)


def test_delete_room_is_idempotent(fake_daily):
    room = create()
    assert run_shared(lambda http: daily.delete_room(http, room.name)) is True
    assert run_shared(lambda http: daily.delete_room(http, room.name)) is False
    assert fake_daily.deleted == [room.name] and room.name not in fake_daily.rooms


def test_delete_room_server_error_is_transient(fake_daily):
    fake_daily.fail_next("DELETE /rooms/*", 502)
    with pytest.raises(TransientError):
        run_shared(lambda http: daily.delete_room(http, "mr-anything"))


# --- tokens --------------------------------------------------------------------


def test_local_token_is_a_daily_jwt_for_the_room(fake_daily):
    room = create(dialin=True, caller_phone="+15551230000")
    token = run_shared(lambda http: daily.meeting_token(http, room))
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = fake_daily.verify_token(token)  # signed with the domain's API key
    assert claims["r"] == room.name
    assert claims["d"] == fake_daily.domain_id
    assert claims["o"] is True
    assert claims["exp"] == int(room.exp)
    assert abs(claims["iat"] - time.time()) < 5
    assert fake_daily.requests_to("POST /meeting-tokens") == []


def test_domain_id_is_fetched_once_per_process(fake_daily):
    rooms = [create() for _ in range(3)]
    for room in rooms:
        run_shared(lambda http, room=room: daily.meeting_token(http, room))
    assert len(fake_daily.requests_to("GET /")) == 1


def test_concurrent_first_token_requests_share_one_domain_fetch(fake_daily):
    import asyncio

    fake_daily.latency_ms = 50
    room = daily.Room(name="mr-x", url="https://x.daily.co/mr-x", exp=time.time() + 60)

    async def many(http):
        return await asyncio.gather(*(daily.meeting_token(http, room) for _ in range(10)))

    tokens = run_shared(many)
    assert len(tokens) == 10
    assert len(fake_daily.requests_to("GET /")) == 1


def test_first_token_costs_no_extra_round_trip(fake_daily):
    # create_room starts the domain-id fetch alongside the room's request
    fake_daily.latency_ms = 300

    async def room_and_token(http):
        room = await daily.create_room(http, session_id=str(uuid.uuid4()), dialin=False, max_duration_s=60)
        return await daily.meeting_token(http, room)

    t0 = time.monotonic()
    token = run_shared(room_and_token)
    elapsed = time.monotonic() - t0
    assert fake_daily.verify_token(token)["d"] == fake_daily.domain_id
    assert len(fake_daily.requests_to("GET /")) == 1
    assert elapsed < 0.55, f"room + first token took {elapsed:.2f}s: the domain fetch did not overlap"


def test_rest_token_mode_asks_daily(fake_daily, settings):
    settings.DAILY_MEETING_TOKEN_MODE = "rest"
    room = create()
    token = run_shared(lambda http: daily.meeting_token(http, room))
    [req] = fake_daily.requests_to("POST /meeting-tokens")
    assert req["json"] == {"properties": {"room_name": room.name, "exp": int(room.exp),
                                          "is_owner": True, "eject_at_token_exp": True}}
    claims = fake_daily.verify_token(token)
    assert claims["r"] == room.name and claims["o"] is True
    assert fake_daily.requests_to("GET /") == []


def test_unknown_token_mode_is_permanent(fake_daily, settings):
    settings.DAILY_MEETING_TOKEN_MODE = "carrier-pigeon"
    room = daily.Room(name="mr-x", url="https://x.daily.co/mr-x", exp=time.time() + 60)
    with pytest.raises(PermanentError) as exc:
        run_shared(lambda http: daily.meeting_token(http, room))
    assert "DAILY_MEETING_TOKEN_MODE" in exc.value.reason


def test_errors_never_carry_a_phone_number_in_clear(fake_daily):
    fake_daily.fail_next("POST /rooms", 400, json={
        "error": "invalid-request-error", "info": "sip.display_name '+15551230000' is not allowed"})
    with pytest.raises(PermanentError) as exc:
        create(dialin=True, caller_phone="+15551230000")
    assert "+15551230000" not in exc.value.reason and "+15551230000" not in exc.value.body
    assert "+1••••••••00" in exc.value.reason


def test_rooms_are_private_whatever_the_settings(fake_daily, settings):
    """No setting can make a patient's call room public (DAILY_ROOM_PRIVACY is gone)."""
    settings.DAILY_ROOM_PRIVACY = "public"
    create(dialin=False)
    assert fake_daily.requests_to("POST /rooms")[0]["json"]["privacy"] == "private"
