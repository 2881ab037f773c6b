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
