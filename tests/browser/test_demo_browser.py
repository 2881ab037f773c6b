"""The newcomer's first call, in a real browser, on the demo setup (``make demo``):
the demo data (``seed_demo``), the call sandbox answering as Daily and the bot
runner, and the real bot.py making the call in the call simulator (a patient
speaking through espeak-ng, a local fake of OpenAI), reporting over the real
status socket. Log in as
the demo staff user, Call patient, watch the live page reach Completed with a
transcript and an outcome, then find the call counted on the dashboard.
Screenshots go to test-results/.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from playwright.async_api import expect

from calls.management.commands.seed_demo import DEMO_PASSWORD
from patients.models import Patient
from sandbox.calls import parse_rates
from sandbox.server import Sandbox
from tests.sandbox_fixtures import SandboxThread, sandbox_settings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db, settings):
    """``make demo`` in a fixture: demo data, sandbox, and the server pointed at it."""
    call_command("seed_demo", stdout=open("/dev/null", "w"))
    server = SandboxThread(Sandbox(rates=parse_rates("answered=1"), seed=7)).start()
    sandbox_settings(settings, server)
    yield Patient.objects.get(external_id="EHR-1001")
    server.stop()


@pytest.fixture
def live(demo, asgi_live_server):
    return asgi_live_server


async def test_demo_staff_calls_a_patient_and_sees_it_through(demo, live, browser, results_dir):
    # The browser's own zone is neither UTC nor the clinic's: pages must not use it.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Tokyo")
    page = await context.new_page()
    await page.goto(f"{live.url}/admin/login/?next=/admin/")
    await page.fill("#id_username", "staff")
    await page.fill("#id_password", DEMO_PASSWORD)
    await page.click("input[type=submit]")
    await expect(page.locator("#user-tools")).to_contain_text("staff")

    await page.goto(f"{live.url}/admin/patients/patient/{demo.pk}/change/")
    await page.get_by_role("link", name="Call patient").click()
    await page.get_by_role("button", name="Call now").click()
    await page.wait_for_url(f"{live.url}/calls/**")

    # ringing → transcript → outcome → completed, pushed to the open page
    await expect(page.locator('[data-field="patient"]').first).to_have_text("Ada Lovelace")
    await expect(page.locator("#timeline")).to_contain_text("Dialing", timeout=20_000)
    # the bot waits for the patient's "Hello?" (the demo workflow lets the callee speak first), asks, hears the answer
    transcript = page.locator("#transcript")
    await expect(transcript).to_contain_text("Patient Hello?", timeout=30_000)
    await expect(transcript).to_contain_text("Will you be able to make it?", timeout=30_000)
    await expect(transcript).to_contain_text("Yes, I'll be there.", timeout=30_000)
    await expect(transcript).to_contain_text("Goodbye!", timeout=30_000)
    await expect(page.locator('[data-field="outcome-result"]')).to_have_text("confirmed", timeout=30_000)
    await expect(page.locator('#live-root [data-field="status"]').first).to_have_text("Completed", timeout=30_000)
    await page.screenshot(path=str(results_dir / "demo-call-completed.png"), full_page=True)

    # The live page (times re-rendered by its script) and the admin agree: the clinic's zone.
    live_created = await page.locator('time[data-field="created_at"]').inner_text()
    live_ended = await page.locator('time[data-field="ended_at"]').inner_text()
    session_id = page.url.rstrip("/").rsplit("/", 1)[1]
    await page.goto(f"{live.url}/admin/calls/callsession/{session_id}/change/")
    assert await page.locator(".field-created_local .readonly").inner_text() == live_created
    assert (await page.locator(".field-ended_local .readonly").inner_text()).endswith(" " + live_ended)
    await page.goto(f"{live.url}/admin/calls/callsession/")
    status_cell = page.locator("td.field-status_badge").first
    await expect(status_cell).to_have_text("Completed")
    box = await status_cell.bounding_box()
    shown = await page.locator("#changelist .results").bounding_box()
    assert box and shown and box["x"] + box["width"] <= shown["x"] + shown["width"]  # not cut at 1280 px
    await page.screenshot(path=str(results_dir / "demo-admin-calls-1280.png"), full_page=True)

    # the dashboard, from the live list, counts it
    await page.goto(f"{live.url}/calls/live/")
    await expect(page.locator("#calls-finished")).to_contain_text("confirmed")
    await page.screenshot(path=str(results_dir / "demo-live-list.png"), full_page=True)
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.locator("#total-calls")).to_have_text("1")
    await expect(page.locator("#answer-rate")).to_have_text("100%")
    await expect(page.locator('.dash-outcomes tr[data-result="confirmed"] .dash-count')).to_have_text("1")
    await page.screenshot(path=str(results_dir / "demo-dashboard.png"), full_page=True)
    await context.close()
