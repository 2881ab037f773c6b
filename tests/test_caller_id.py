"""Daily's callerId is a purchased number's id: an E.164 caller id is looked up when saved (calls.caller_ids)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from calls import caller_ids
from organizations.models import Organization
from tests import factories

pytestmark = pytest.mark.django_db

NUMBER_ID = "841d430e-bd9e-42c1-8abb-8f35d78b33b9"


@pytest.fixture(autouse=True)
def _fresh_cache():
    caller_ids.clear_cache()
    yield
    caller_ids.clear_cache()


def _save_org(org, caller_id):
    admin_user = factories.make_user(is_superuser=True)
    browser = Client()
    browser.force_login(admin_user)
    url = reverse("admin:organizations_organization_change", args=[org.pk])
    return browser.post(url, {
        "name": org.name, "slug": org.slug, "timezone": "UTC", "is_active": "on", "max_concurrent_calls": 10,
        "dialout_caller_id": caller_id, "callback_number": "", "dialin_webhook_secret": "",
        "transcript_retention_days": "",
    })


def test_the_organisation_page_stores_the_id_of_the_number_entered(fake_daily):
    fake_daily.purchased_numbers = {f"+1415555{i:04d}": f"00000000-0000-4000-8000-{i:012d}" for i in range(60)}
    fake_daily.purchased_numbers["+16575870006"] = NUMBER_ID  # on the second page of 50
    org = factories.make_org()
    response = _save_org(org, "+16575870006")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Organization.objects.get(pk=org.pk).dialout_caller_id == NUMBER_ID


def test_the_organisation_page_refuses_a_number_the_domain_did_not_buy(fake_daily):
    fake_daily.purchased_numbers = {"+16575870006": NUMBER_ID}
    org = factories.make_org()
    response = _save_org(org, "+14155550100")
    assert response.status_code == 200
    assert "is not a phone number bought on this Daily domain" in response.content.decode()
    assert Organization.objects.get(pk=org.pk).dialout_caller_id == ""


def test_a_uuid_is_taken_as_it_is_without_asking_daily(fake_daily):
    org = factories.make_org()
    assert _save_org(org, NUMBER_ID).status_code == 302
    assert Organization.objects.get(pk=org.pk).dialout_caller_id == NUMBER_ID
    assert fake_daily.requests_to("GET /purchased-phone-numbers") == []


def test_daily_failing_is_said_and_nothing_is_stored(fake_daily):
    fake_daily.fail_next("GET /purchased-phone-numbers", 500)
    org = factories.make_org()
    response = _save_org(org, "+16575870006")
    assert response.status_code == 200
    assert "Daily could not be asked which numbers this domain bought" in response.content.decode()
