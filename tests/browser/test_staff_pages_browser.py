"""Staff pages in a real browser: one status everywhere on a call's page, live."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests import factories
from tests.browser.test_live_pages_browser import PASSWORD, Bot, call_patient, logged_in_page, wait_live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live(fake_daily, fake_runner, asgi_live_server):
    return asgi_live_server


@pytest.fixture
def world(transactional_db):
    org = factories.make_org("clinic-a", name="Clinic A")
    factories.make_workflow(org, slug="reminder", name="Appointment reminder", max_attempts=3, retry_on=["busy"],
                            retry_delays_min=[60])
    return dict(patient=factories.make_patient(org, first_name="Ada", last_name="Lovelace"),
                staff=factories.make_user("sam-staff", org=org, role="staff", password=PASSWORD))


async def test_the_attempts_panel_follows_the_calls_status_without_a_reload(live, world, browser, fake_runner):
    page = await logged_in_page(browser, live, world["staff"])
    session_id = await call_patient(page, live, world["patient"])
    await wait_live(page)
    current = page.locator("#attempt-chain li.current .status-badge")
    await expect(current).to_have_text("Starting")
    await page.evaluate("window.__notReloaded = true")

    async with Bot(live, fake_runner.started[0]) as bot:
        await bot.send("bot_started")
        await bot.send("dialout_answered", {"attempt": 1})
        await bot.send("ended", {"reason": "completed"})

    await expect(page.locator('.call-head [data-field="status"]')).to_have_text("Completed")
    await expect(current).to_have_text("Completed")
    await expect(current).to_have_class("status-badge status-completed")
    assert await page.evaluate("window.__notReloaded") is True
    assert session_id in page.url
