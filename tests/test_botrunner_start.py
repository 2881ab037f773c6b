"""botrunner.start: one start_bot, two targets, and how each fault is classified."""

from __future__ import annotations

import pytest

from botrunner import start
from botrunner.errors import AmbiguousStartError, MissingCredentialsError, PermanentError, TransientError
from tests.fakes.aio import closed_port_url, run_shared, run_with_session
from tests.fakes.samples import agent_request

CLOUD_START = "POST /v1/public/*/start"


def start_bot(req):
    return run_shared(lambda http: start.start_bot(req, http))


# --- targets and body ------------------------------------------------------------


def test_local_target_gets_the_agent_request(fake_pipecat, fake_runner, settings):
    settings.ENV = "development"
    req = agent_request("dial_in")
    assert start_bot(req) is None  # the runner answers null
    [sent] = fake_runner.requests_to("POST /start")
    assert sent["json"]["createDailyRoom"] is False
    assert sent["json"]["body"] == req.model_dump(exclude_none=True)
    assert "dialout_settings" not in sent["json"]["body"]
    assert "Authorization" not in sent["headers"]
    assert fake_runner.started == [req.model_dump(exclude_none=True)]  # bot() really ran
    assert fake_pipecat.requests == []


def test_local_runner_without_dash_t_still_runs_a_daily_bot(fake_runner):
    # `python bot.py` with no -t treats a start without "transport" as WebRTC
    # and never runs the bot; the runner must be told "daily".
    fake_runner.cli_transport = None
    start_bot(agent_request())
    assert fake_runner.requests_to("POST /start")[0]["json"]["transport"] == "daily"
    assert len(fake_runner.started) == 1 and fake_runner.webrtc_sessions == []


def test_local_runner_started_with_dash_t_daily(fake_runner):
    fake_runner.cli_transport = "daily"
    start_bot(agent_request())
    assert len(fake_runner.started) == 1


def test_production_target_bearer_and_body(fake_runner, fake_pipecat, settings):
    settings.ENV = "production"
    req = agent_request("dial_out")
    answer = start_bot(req)
    assert set(answer) >= {"sessionId", "dailyRoom", "dailyToken"}
    [sent] = fake_pipecat.requests
    assert sent["path"] == f"/v1/public/{settings.PIPECAT_AGENT_NAME}/start"
    assert sent["headers"]["Authorization"] == f"Bearer {fake_pipecat.api_key}"
    assert sent["json"] == {"createDailyRoom": False, "body": req.model_dump(exclude_none=True)}
    body = sent["json"]["body"]
    assert body["dialout_settings"] == {"phone_number": "+15550000003", "caller_id": "+15550000002"}
    assert "dialin_settings" not in body
    assert body["room_url"] == req.room_url and body["token"] == req.token
    assert fake_runner.requests == []


@pytest.mark.parametrize("variable", ["PIPECAT_API_KEY", "PIPECAT_AGENT_NAME"])
def test_production_missing_credentials_name_the_variable(fake_pipecat, settings, variable):
    setattr(settings, variable, "")
    with pytest.raises(MissingCredentialsError) as exc:
        start_bot(agent_request())
    assert exc.value.variable == variable and variable in exc.value.reason
    assert isinstance(exc.value, PermanentError)
    assert fake_pipecat.requests == []
    assert any(variable in problem for problem in start.check_start_config())


def test_check_start_config(settings):
    settings.DAILY_API_KEY = "k"
    settings.ENV = "development"
    settings.PIPECAT_API_KEY = settings.PIPECAT_AGENT_NAME = ""
    assert start.check_start_config() == []  # local runner needs no Pipecat key
    settings.DAILY_API_KEY = ""
    assert ["DAILY_API_KEY" in p for p in start.check_start_config()] == [True]
    settings.ENV = "production"
    problems = " ".join(start.check_start_config())
    assert "DAILY_API_KEY" in problems and "PIPECAT_API_KEY" in problems and "PIPECAT_AGENT_NAME" in problems


# --- classification --------------------------------------------------------------


def test_capacity_429_is_transient_then_succeeds(fake_pipecat):
    fake_pipecat.at_capacity()
    req = agent_request()
    with pytest.raises(TransientError) as exc:
        start_bot(req)
    assert exc.value.status == 429 and "PCC-AGENT-AT-CAPACITY" in exc.value.reason
    start_bot(req)
    assert len(fake_pipecat.sessions) == 1


@pytest.mark.parametrize("status,kind", [
    (503, TransientError),
    (429, TransientError),
    (502, AmbiguousStartError),
    (504, AmbiguousStartError),
    (400, PermanentError),
    (401, PermanentError),
    (404, PermanentError),
    (413, PermanentError),
    (500, PermanentError),
])
def test_status_classification(fake_pipecat, status, kind):
    fake_pipecat.fail_next(CLOUD_START, status, json={"error": f"boom {status}", "code": f"C{status}"})
    with pytest.raises(kind) as exc:
        start_bot(agent_request())
    err = exc.value
    assert type(err) is kind
    assert err.status == status
    assert f"boom {status}" in err.body and f"boom {status}" in err.reason
    assert len(fake_pipecat.requests) == 1


def test_wrong_key_says_which_variable(fake_pipecat, settings):
    settings.PIPECAT_API_KEY = "pk_wrong"
    with pytest.raises(PermanentError) as exc:
        start_bot(agent_request())
    assert exc.value.status == 401 and "PIPECAT_API_KEY" in exc.value.reason


def test_unknown_agent_says_which_variable(fake_pipecat, settings):
    settings.PIPECAT_AGENT_NAME = "no-such-agent"
    with pytest.raises(PermanentError) as exc:
        start_bot(agent_request())
    assert exc.value.status == 404 and "PIPECAT_AGENT_NAME" in exc.value.reason


def test_local_runner_error_status_and_text(fake_runner):
    fake_runner.fail_next("POST /start", 400, json={"detail": "Transport 'daily' is not allowed"})
    with pytest.raises(PermanentError) as exc:
        start_bot(agent_request())
    assert exc.value.status == 400 and "not allowed" in exc.value.body and "not allowed" in exc.value.reason


def test_timeout_after_sending_is_ambiguous(fake_pipecat):
    fake_pipecat.hang_s = 1.0
    fake_pipecat.hang_next(CLOUD_START)
    req = agent_request()
    with pytest.raises(AmbiguousStartError) as exc:
        run_with_session(lambda http: start.start_bot(req, http), total=0.3)
    assert "may have started" in exc.value.reason
    assert len(fake_pipecat.requests) == 1  # it was sent: the bot may be starting


def test_disconnect_after_sending_is_ambiguous(fake_pipecat):
    fake_pipecat.disconnect_next(CLOUD_START)
    with pytest.raises(AmbiguousStartError):
        start_bot(agent_request())
    assert len(fake_pipecat.requests) == 1


def test_connection_refused_is_transient(fake_runner, settings):
    settings.LOCAL_SERVER_URL = closed_port_url()
    with pytest.raises(TransientError) as exc:
        start_bot(agent_request())
    assert "Could not connect" in exc.value.reason and exc.value.status is None
    # ...and says what to do about it
    assert "start the bot runner with `make bot`" in exc.value.reason and "LOCAL_SERVER_URL" in exc.value.reason


def test_dns_failure_is_transient(fake_pipecat, settings):
    settings.PIPECAT_API_URL = "http://no-such-host.invalid"
    with pytest.raises(TransientError):
        run_with_session(lambda http: start.start_bot(agent_request(), http), total=10, connect=5)


def test_no_patient_data_in_error_reason(fake_pipecat):
    fake_pipecat.fail_next(CLOUD_START, 400, body="x" * 5000)
    with pytest.raises(PermanentError) as exc:
        start_bot(agent_request())
    assert len(exc.value.body) <= 1000 and len(exc.value.reason) < 400
