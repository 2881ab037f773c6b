import pytest

from tests.fakes.fixtures import *  # noqa: F401,F403 - the fake Daily / Pipecat / runner servers

from tests import factories


@pytest.fixture
def org(db):
    return factories.make_org("clinic-a", name="Clinic A")


@pytest.fixture
def other_org(db):
    return factories.make_org("clinic-b", name="Clinic B")


@pytest.fixture
def workflow(org):
    return factories.make_workflow(org)


@pytest.fixture
def patient(org):
    return factories.make_patient(org, phone="+14155550123", first_name="Ada", last_name="Lovelace")


from tests.live import asgi_live_server, celery_worker, live_server_port, plain_celery_worker  # noqa: E402,F401
from tests.sandbox_fixtures import call_sandbox  # noqa: E402,F401
from tests.fhir_fixtures import fake_fhir, fake_fhir_server, fhir_keys  # noqa: E402,F401


def pytest_configure(config):
    """Name the test database explicitly: live servers and workers run in other processes."""
    import os

    from django.conf import settings

    db = settings.DATABASES["default"]
    test = db.setdefault("TEST", {})
    if db["ENGINE"].endswith("sqlite3"):
        test["NAME"] = os.environ.get("TEST_DATABASE_NAME") or f"/tmp/myrobot-test-{os.getpid()}.sqlite3"
    else:
        test["NAME"] = os.environ.get("TEST_DATABASE_NAME") or f"test_myrobot_{os.getpid()}"


@pytest.fixture(autouse=True)
def _calling_hours_floor(request, monkeypatch):
    """The legal 08:00–21:00 floor would make tests that place calls "now" depend on the hour
    they run at: lifted for them (in this process and the servers it forks), kept for tests
    marked ``calling_hours_floor``, which freeze the clock."""
    if request.node.get_closest_marker("calling_hours_floor"):
        return
    import datetime

    from calls import rules

    monkeypatch.setattr(rules, "CALLING_HOURS_FLOOR", (datetime.time(0, 0), datetime.time.max))


@pytest.fixture(autouse=True)
def _start_inline(settings):
    """Tests start calls inline under eager Celery (tests/test_embedded_start.py turns the thread on)."""
    settings.EMBEDDED_START_IN_THREAD = False


@pytest.fixture(autouse=True)
def _celery_eager_unless_worker(request):
    """Most tests run tasks inline; tests that ask for `celery_worker` get a real one."""
    from myrobot.celery import app

    if {"celery_worker", "plain_celery_worker"} & set(request.fixturenames):
        yield
        return
    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old
