"""A campaign in a real browser: started from selected patients, watched live, paused.

Staff select patients and "Start a campaign…", land on the campaign page, and
watch its progress bar, counts and results move as the bots (played by the
test over the status socket) answer and end their calls; Pause shows at once.
A viewer's page has the progress but no buttons and no names. Screenshot in
test-results/campaign-page.png.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from calls import dispatcher
from calls.models import CallSession
from calls.tasks import start_call
from campaigns.models import Campaign
from organizations import timefmt
from tests import factories
from tests.browser.test_live_pages_browser import PASSWORD, Bot, logged_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live(fake_daily, fake_runner, asgi_live_server):
    return asgi_live_server


@pytest.fixture
def world(transactional_db):
    a = factories.make_org("clinic-a", name="Clinic A")
    factories.make_workflow(a, slug="reminder", name="Appointment reminder")
    people = [("Grace", "Hopper"), ("Alan", "Turing"), ("Katherine", "Johnson"), ("Edsger", "Dijkstra")]
    patients = [factories.make_patient(a, first_name=f, last_name=l) for f, l in people]
    patients[3].do_not_call = True
    patients[3].save()
    return dict(
        a=a, patients=patients,
        staff=factories.make_user("sam-staff", org=a, role="staff", password=PASSWORD),
        viewer=factories.make_user("vic-viewer", org=a, role="viewer", password=PASSWORD),
    )


async def test_campaign_started_watched_and_paused(live, world, browser, fake_runner, results_dir):
    fake_runner.cli_transport = "daily"
    staff = await logged_in_page(browser, live, world["staff"])
    csp_errors: list[str] = []
    staff.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    await staff.goto(f"{live.url}/admin/patients/patient/")
    await staff.locator("#action-toggle").check()
    await staff.select_option("select[name=action]", "start_campaign")
    await staff.locator("button[name=index]").first.click()
    await staff.fill("#id_name", "December reminders")
    await staff.fill("#id_pace_per_minute", "10")
    await staff.get_by_role("button", name="Start campaign").click()
    await expect(staff.locator("#campaign-root")).to_have_attribute("data-ws", "open")
    await expect(staff.locator('[data-field="campaign-status"]')).to_have_text("Running")
    await expect(staff.locator('[data-count="pending"]')).to_have_text("3")
    await expect(staff.locator('[data-count="skipped"]')).to_have_text("1")
    await staff.evaluate("window.__notReloaded = true")
    campaign = await Campaign.objects.aget()

    # One dispatcher tick releases the three calls (pace 10) and starts them.
    await sync_to_async(dispatcher.dispatch)(start_call.delay, reap=False)
    assert len(fake_runner.started) == 3
    bodies = list(fake_runner.started)

    viewer = await logged_in_page(browser, live, world["viewer"])
    await viewer.goto(f"{live.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    await expect(viewer.locator("#campaign-root")).to_have_attribute("data-ws", "open")

    for body, result in zip(bodies[:2], ["confirmed", "rescheduled"]):
        async with Bot(live, body) as bot:
            await bot.send("bot_started")
            await bot.send("dialout_answered", {"attempt": 1})
            await bot.send("outcome", {"result": result, "notes": "", "data": {}})
            await bot.send("ended", {"reason": "completed"})
    await expect(staff.locator('[data-count="reached"]')).to_have_text("2")
    await expect(staff.locator('[data-result="confirmed"]')).to_have_text("confirmed: 1")
    # "Started" arrived over the socket, in the clinic's zone, formatted as the server does.
    started = await CallSession.objects.select_related("organization").filter(
        campaign_id=campaign.pk, status="completed").afirst()
    await expect(staff.locator(f'tr[data-session-id="{started.pk}"] [data-field="started_at"]')).to_have_text(
        timefmt.show(started.started_at, started.organization.timezone))
    await expect(staff.locator('[data-result="rescheduled"]')).to_have_text("rescheduled: 1")
    await expect(staff.locator('[data-field="percent"]')).to_have_text("75")  # 2 reached + 1 skipped of 4
    await expect(viewer.locator('[data-count="reached"]')).to_have_text("2")
    await expect(staff.locator('[data-field="bar"]')).to_have_attribute("style", "width: 75%;")

    assert await staff.evaluate("window.__notReloaded") is True  # all of that arrived over the socket
    await staff.get_by_role("button", name="Pause").click()
    await expect(staff.locator('[data-field="campaign-status"]')).to_have_text("Paused")
    await expect(viewer.locator('[data-field="campaign-status"]')).to_have_text("Paused")
    await expect(staff.get_by_role("button", name="Resume")).to_be_visible()
    rows = staff.locator("#campaign-calls tbody tr")
    await expect(rows).to_have_count(3)
    link = rows.first.locator("a")
    assert (await link.get_attribute("href")).startswith("/calls/")
    await staff.screenshot(path=str(results_dir / "campaign-page.png"), full_page=True)

    # The viewer: progress, no buttons, no names.
    await expect(viewer.locator("[data-action]")).to_have_count(0)
    html = await viewer.content()
    for name in ("Hopper", "Turing", "Johnson"):
        assert name not in html
    assert csp_errors == []
