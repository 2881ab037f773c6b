"""The staff experience in a real browser, against a live ASGI server (daphne).

A staff member logs in, clicks Call patient and lands on the call's live page;
the fake runner received the bot start, and the test then plays the bot: it
connects to the status socket named in that start body, with its token, and
sends status-protocol messages, which must show on the open pages without a
reload. Viewers see the call masked; another organisation sees nothing; the
live list picks up a dial-in webhook; Hang up ends the call and deletes its
room at the fake Daily. Screenshots go to test-results/.

The fakes are requested before ``asgi_live_server`` (the daphne child is forked
with the settings of that moment); on the embedded defaults Celery runs eagerly
inside that child, so a start happens within the request that placed the call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import aiohttp
import pytest
from playwright.async_api import expect

from calls import webhooks
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = "Ada Lovelace"
PHONE = "+14155550123"
HELLO = "Hello Ada, this is Clinic A calling about your appointment."
SAID = "Yes, Tuesday at ten thirty works for me."
PASSWORD = "pw-123456"
SECRET = base64.b64encode(b"clinic-a-pinless-secret-0123456789").decode()


@pytest.fixture
def live(fake_daily, fake_runner, asgi_live_server):
    """The live server, forked after the fakes set their settings."""
    return asgi_live_server


@pytest.fixture
def world(transactional_db):
    a = factories.make_org("clinic-a", name="Clinic A", dialin_webhook_secret=SECRET)
    b = factories.make_org("clinic-b", name="Clinic B")
    reminder = factories.make_workflow(a, slug="reminder", name="Appointment reminder")
    inbound = factories.make_workflow(a, slug="inbound", name="Inbound line", direction="dial_in")
    patient = factories.make_patient(a, phone=PHONE, first_name="Ada", last_name="Lovelace")
    factories.make_workflow(b, slug="reminder", name="B reminder")
    return dict(
        a=a, b=b, reminder=reminder, inbound=inbound, patient=patient,
        staff=factories.make_user("sam-staff", org=a, role="staff", password=PASSWORD),
        viewer=factories.make_user("vic-viewer", org=a, role="viewer", password=PASSWORD),
        other=factories.make_user("olga-other", org=b, role="staff", password=PASSWORD),
    )


@pytest.fixture
def history(world):
    """Some finished calls and one ringing, so the list (and its screenshot) is not empty.

    Made here, in the test's own thread: ORM calls through sync_to_async from the
    async test would leave a connection open in the executor thread.
    """
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    a, wf, inbound = world["a"], world["reminder"], world["inbound"]
    people = [("Grace", "Hopper"), ("Alan", "Turing"), ("Katherine", "Johnson"), ("Edsger", "Dijkstra")]
    outcomes = [("completed", "confirmed"), ("no_answer", None), ("completed", "rescheduled"), ("failed", None)]
    for i, ((first, last), (status, result)) in enumerate(zip(people, outcomes)):
        p = factories.make_patient(a, first_name=first, last_name=last)
        factories.make_call(
            a, wf if i % 2 == 0 else inbound, p, status=status,
            started_at=now - timedelta(minutes=20 + i * 7), answered_at=now - timedelta(minutes=19 + i * 7),
            ended_at=now - timedelta(minutes=17 + i * 7), end_reason=status if status != "failed" else "start_failed",
            outcome={"result": result, "notes": "", "data": {}} if result else None,
        )
    factories.make_call(
        a, wf, factories.make_patient(a, first_name="Barbara", last_name="Liskov"), status="ringing",
        started_at=now - timedelta(seconds=20),
    )


# --- helpers ------------------------------------------------------------------------------


async def logged_in_page(browser, live, user):
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    page = await context.new_page()
    # Every Content-Security-Policy violation Chromium reports (tests assert none).
    page.csp_violations = []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))
    await page.goto(f"{live.url}/admin/login/?next=/admin/")
    await page.fill("#id_username", user.username)
    await page.fill("#id_password", PASSWORD)
    await page.click("input[type=submit]")
    await expect(page.locator("#user-tools")).to_contain_text(user.username)
    return page


async def wait_live(page):
    """The page's socket is open (and its snapshot sent): updates from now on reach it."""
    await expect(page.locator("#live-root")).to_have_attribute("data-ws", "open")
    await expect(page.locator("#live-indicator")).to_have_text("Live")


async def call_patient(page, live, patient) -> str:
    """Through the admin: the patient's page, Call patient, choose the workflow, Call now."""
    await page.goto(f"{live.url}/admin/patients/patient/{patient.pk}/change/")
    await page.get_by_role("link", name="Call patient").click()
    await page.get_by_role("button", name="Call now").click()
    await page.wait_for_url(re.compile(r"/calls/[0-9a-f-]{36}/$"))
    return page.url.rstrip("/").rsplit("/", 1)[1]


class Bot:
    """Plays the bot: the status socket from the start body, status-protocol messages."""

    def __init__(self, live, start_body: dict):
        assert start_body["status_url"] == f"{live.ws_url}/ws/bot/{start_body['session_id']}/"
        self.url = start_body["status_url"]  # exactly what the bot is told
        self.token = start_body["status_token"]
        self.seq = 0

    async def __aenter__(self):
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"})
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.http.close()

    async def send(self, event: str, data: dict | None = None):
        self.seq += 1
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}+00:00"
        await self.ws.send_str(json.dumps({"seq": self.seq, "event": event, "at": at, "data": data or {}}))


async def _eventually(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def collect_frames(page) -> list[str]:
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    return frames


async def socket_opens(page, path) -> str:
    """Try a WebSocket from inside the page (its cookies, its Origin): "open" or "closed"."""
    return await page.evaluate(
        """(path) => new Promise((resolve) => {
            const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
            ws.onopen = () => { resolve("open"); ws.close(); };
            ws.onclose = () => resolve("closed");
            setTimeout(() => resolve("timeout"), 5000);
        })""",
        path,
    )


# --- the tests -------------------------------------------------------------------------------


async def test_call_patient_lands_on_live_page_and_bot_events_stream(
    live, world, browser, fake_runner, fake_daily, results_dir
):
    staff = await logged_in_page(browser, live, world["staff"])
    session_id = await call_patient(staff, live, world["patient"])
    await expect(staff.locator(".messagelist")).to_contain_text("Calling")

    # The fake runner received exactly one start, for this call, with its status socket.
    assert len(fake_runner.started) == 1
    body = fake_runner.started[0]
    assert body["session_id"] == session_id
    assert body["dialout_settings"]["phone_number"] == PHONE
    assert body["status_url"].endswith(f"/ws/bot/{session_id}/") and body["status_token"]
    assert len(fake_daily.requests_to("POST /rooms")) == 1

    await wait_live(staff)
    await expect(staff.locator('#live-root [data-field="status"]').first).to_have_text("Starting")
    await expect(staff.locator('[data-field="patient"]')).to_have_text(NAME)
    await staff.evaluate("window.__notReloaded = true")

    # A viewer of the same organisation watches too; so does a stranger, who cannot.
    viewer = await logged_in_page(browser, live, world["viewer"])
    viewer_frames = collect_frames(viewer)
    await viewer.goto(f"{live.url}/calls/{session_id}/")
    await wait_live(viewer)
    await viewer.evaluate("window.__notReloaded = true")

    other = await logged_in_page(browser, live, world["other"])
    response = await other.goto(f"{live.url}/calls/{session_id}/")
    assert response.status == 404
    await other.goto(f"{live.url}/calls/live/")
    assert await socket_opens(other, f"/ws/calls/{session_id}/") == "closed"
    assert await socket_opens(other, "/ws/calls/") == "open"  # their own list is fine
    assert session_id not in await other.content()

    async with Bot(live, body) as bot:
        await bot.send("bot_started")
        await bot.send("joined")
        await bot.send("dialout_attempt", {"attempt": 1, "max_attempts": 5})
        await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("Ringing")
        await expect(staff.locator("#attempts")).to_contain_text("attempt 1 of 5")
        await expect(staff.locator('[data-field="dialout_attempts"]')).to_have_text("1")

        await bot.send("dialout_answered", {"attempt": 1, "sessionId": "dial-1"})
        await bot.send("transcript", {"role": "assistant", "text": HELLO})
        await bot.send("transcript", {"role": "user", "text": SAID})
        await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("In progress")
        await expect(staff.locator("#transcript .line")).to_have_count(2)
        await expect(staff.locator("#transcript .role-assistant .text")).to_have_text(HELLO)
        await expect(staff.locator("#transcript .role-user .text")).to_have_text(SAID)
        await expect(staff.get_by_role("button", name="Hang up")).to_be_visible()

        await bot.send("outcome", {"result": "confirmed", "notes": "Ada Lovelace confirmed Tuesday", "data": {"slot": "Tue 10:30"}})
        await expect(staff.locator('[data-field="outcome-result"]')).to_have_text("confirmed")
        await expect(staff.locator('[data-field="outcome-notes"]')).to_have_text("Ada Lovelace confirmed Tuesday")
        await expect(staff.locator("#status-steps")).to_contain_text("Ringing")
        await expect(staff.locator("#timeline")).to_contain_text("Answered")
        await expect(staff.locator("#timeline")).to_contain_text("Ringing → In progress")
        await staff.screenshot(path=str(results_dir / "live-call-staff.png"), full_page=True)

        # The viewer's page followed along, without the name, the phone or a word said.
        await expect(viewer.locator('.call-head [data-field="status"]')).to_have_text("In progress")
        await expect(viewer.locator('[data-field="outcome-result"]')).to_have_text("confirmed")
        await expect(viewer.locator('[data-field="patient"]')).to_have_text(world["patient"].masked_name)
        await expect(viewer.locator("#transcript")).to_have_count(0)
        await expect(viewer.get_by_role("button", name="Hang up")).to_have_count(0)
        await viewer.screenshot(path=str(results_dir / "live-call-viewer.png"), full_page=True)
        viewer_html = await viewer.content()
        viewer_socket = "\n".join(viewer_frames)
        assert viewer_socket, "the viewer's socket carried nothing"
        for secret in ("Lovelace", PHONE, HELLO, SAID, "Tue 10:30", "confirmed Tuesday"):
            assert secret not in viewer_html, secret
            assert secret not in viewer_socket, secret

        await bot.send("ended", {"reason": "completed"})
        await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("Completed")
        await expect(staff.locator('[data-field="end_reason"]')).to_have_text("Completed")
        await expect(staff.locator("#cancel-form")).to_be_hidden()
        await expect(viewer.locator('.call-head [data-field="status"]')).to_have_text("Completed")

    assert await staff.evaluate("window.__notReloaded") is True
    assert await viewer.evaluate("window.__notReloaded") is True
    # The call is over: its room goes (the bot consumer deletes it in the background).
    await _eventually(lambda: fake_daily.requests_to("DELETE /rooms/*"))

    # After the call the page is the full record.
    await staff.reload()
    await expect(staff.locator("#transcript .line")).to_have_count(2)
    await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("Completed")
    await expect(staff.locator("#timeline")).to_contain_text("Bot ended the call")
    await staff.screenshot(path=str(results_dir / "live-call-finished.png"), full_page=True)


async def test_live_list_shows_a_new_dialin_without_reload(live, world, history, browser, fake_runner, results_dir):
    staff = await logged_in_page(browser, live, world["staff"])
    await staff.goto(f"{live.url}/calls/live/")
    await wait_live(staff)
    await staff.evaluate("window.__notReloaded = true")
    dialout_only = await staff.context.new_page()
    await dialout_only.goto(f"{live.url}/calls/live/?direction=dial_out")
    await wait_live(dialout_only)

    # Daily's pinless webhook, signed as Daily signs it, posted to the live server.
    payload = json.dumps(
        {"From": PHONE, "To": "+14155559999", "callId": "call-abc-1", "callDomain": "dom-1"}
    ).encode()
    ts = str(int(time.time()))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{live.url}/api/dialin-webhook/clinic-a/inbound",
            data=payload,
            headers={
                "Content-Type": "application/json",
                webhooks.TIMESTAMP_HEADER: ts,
                webhooks.SIGNATURE_HEADER: webhooks.sign(SECRET, ts, payload),
            },
        )
        assert resp.status == 200, await resp.text()
        session_id = (await resp.json())["session_id"]

    row = staff.locator(f'#calls-unfinished tr[data-session-id="{session_id}"]')
    await expect(row).to_be_visible()
    await expect(row.locator('[data-field="direction"]')).to_have_text("Dial-in")
    await expect(row.locator('[data-field="patient"]')).to_have_text(NAME)  # matched by phone
    await expect(row.locator('[data-field="workflow"]')).to_have_text("Inbound line")
    await expect(row.locator('[data-field="status"]')).to_have_text("Starting")
    await expect(row.locator('[data-field="link"]')).to_have_attribute("href", f"/calls/{session_id}/")

    # The bot reports: status changes reach the list, and the duration ticks.
    body = fake_runner.started[-1]
    assert body["session_id"] == session_id and body["dialin_settings"]["call_id"] == "call-abc-1"
    async with Bot(live, body) as bot:
        await bot.send("bot_started")
        await bot.send("dialin_ready", {"sip_endpoint": "sip:x@fake"})
        await expect(row.locator('[data-field="status"]')).to_have_text("Waiting for caller")
        await bot.send("dialin_connected", {})
        await expect(row.locator('[data-field="status"]')).to_have_text("In progress")
        duration = row.locator('[data-field="duration"]')
        await expect(duration).to_have_text(re.compile(r"^0:0[0-9]$"))
        first = await duration.text_content()
        await expect(duration).not_to_have_text(first, timeout=4000)
        await staff.screenshot(path=str(results_dir / "live-list.png"), full_page=True)

        # The dial-out-only list ignored it.
        await expect(dialout_only.locator(f'tr[data-session-id="{session_id}"]')).to_have_count(0)

        await bot.send("ended", {"reason": "completed"})
        finished_row = staff.locator(f'#calls-finished tr[data-session-id="{session_id}"]')
        await expect(finished_row).to_be_visible()
        await expect(finished_row.locator('[data-field="status"]')).to_have_text("Completed")
        await expect(staff.locator(f'#calls-unfinished tr[data-session-id="{session_id}"]')).to_have_count(0)
    assert await staff.evaluate("window.__notReloaded") is True


async def test_hang_up_ends_the_call_and_deletes_its_room(live, world, browser, fake_runner, fake_daily):
    staff = await logged_in_page(browser, live, world["staff"])
    session_id = await call_patient(staff, live, world["patient"])
    await wait_live(staff)
    room = fake_daily.requests_to("POST /rooms")[0]["json"]["name"]
    viewer = await logged_in_page(browser, live, world["viewer"])
    await viewer.goto(f"{live.url}/calls/{session_id}/")
    await wait_live(viewer)

    async with Bot(live, fake_runner.started[0]) as bot:
        await bot.send("bot_started")
        await bot.send("dialout_attempt", {"attempt": 1, "max_attempts": 5})
        await bot.send("dialout_answered", {"attempt": 1})
        await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("In progress")

        dialogs: list[str] = []

        async def accept(dialog):
            dialogs.append(dialog.message)
            await dialog.accept()

        staff.on("dialog", accept)
        await staff.get_by_role("button", name="Hang up").click()
        await expect(staff.locator(".messagelist")).to_contain_text("Hung up the call")
        assert dialogs == ["Hang up this call?"]
        await expect(staff.locator('.call-head [data-field="status"]')).to_have_text("Canceled")
        await expect(staff.locator('[data-field="end_reason"]')).to_have_text("Canceled by staff")
        await expect(staff.get_by_role("button", name="Hang up")).to_have_count(0)
        # the viewer's open page hears it too
        await expect(viewer.locator('.call-head [data-field="status"]')).to_have_text("Canceled")

    assert [r["path"] for r in fake_daily.requests_to("DELETE /rooms/*")] == [f"/rooms/{room}"]
    assert room in fake_daily.deleted


async def test_pages_pass_the_content_security_policy(live, world, browser):
    """The live pages and the admin pages they link to run with the CSP in force:
    no inline script or style is refused, and the live socket still opens."""
    call = await asyncio.to_thread(
        factories.make_call, world["a"], world["reminder"], world["patient"], status="in_progress"
    )
    page = await logged_in_page(browser, live, world["staff"])
    response = await page.goto(f"{live.url}/calls/live/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await wait_live(page)
    await page.goto(f"{live.url}/calls/{call.pk}/")
    await wait_live(page)
    for path in ("/admin/", "/admin/patients/patient/", f"/admin/patients/patient/{world['patient'].pk}/change/",
                 f"/admin/patients/patient/{world['patient'].pk}/call/", "/admin/calls/callsession/",
                 f"/admin/calls/callsession/{call.pk}/change/"):
        await page.goto(f"{live.url}{path}")
        await page.wait_for_load_state("load")
    assert page.csp_violations == []
