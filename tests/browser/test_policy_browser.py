"""The live list's Scheduled section in a real browser: a call placed for later
appears there without a reload, with its ring time in the patient's zone and the
clinic's, and the scheduled count above the tables follows."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from organizations.models import ApiKey
from tests.browser.test_live_pages_browser import live, logged_in_page, wait_live, world  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def api_key(world):  # noqa: F811
    world["patient"].timezone = "America/New_York"
    world["patient"].save()
    world["a"].timezone = "Europe/London"
    world["a"].save()
    _key, raw = ApiKey.generate(world["a"])
    return raw


async def test_a_call_for_later_shows_in_the_scheduled_section(live, world, api_key, browser, fake_runner):  # noqa: F811
    staff = await logged_in_page(browser, live, world["staff"])
    await staff.goto(f"{live.url}/calls/live/")
    await wait_live(staff)
    await expect(staff.locator('[data-count="scheduled"]')).to_have_text("0")

    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{live.url}/api/start-call",
            json={"patient_id": world["patient"].pk, "workflow": "reminder", "not_before": "2030-01-07T15:00:00+00:00"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert resp.status == 202, await resp.text()
        answer = await resp.json()
    assert answer["status"] == "scheduled"

    row = staff.locator(f'tbody[data-section="scheduled"] tr[data-session-id="{answer["session_id"]}"]')
    await expect(row).to_be_visible()
    await expect(row.locator('[data-field="status"]')).to_have_text("Scheduled")
    await expect(row.locator('[data-field="ring"]')).to_contain_text("2030-01-07 15:00 clinic time (patient 10:00 EST)")
    await expect(staff.locator('[data-count="scheduled"]')).to_have_text("1")
    assert fake_runner.started == []  # nothing rang
