"""Webhooks reach public addresses only: decided when saved and again when sent, before connecting.

The decisions are made on a stub resolver; no test here connects anywhere but
the loopback receiver (and only with the loopback allowance turned on explicitly).
"""

from __future__ import annotations

import socket

import pytest

from calls.models import CallStatus
from calls.state import transition
from organizations.models import ApiKey
from tests import factories
from tests.api_fixtures import auth
from webhooks import destinations, services
from webhooks.models import WebhookDelivery, WebhookEndpoint

PUBLIC = "93.184.215.14"

NOT_PUBLIC = [
    "10.0.0.5", "172.16.3.4", "192.168.1.10", "127.0.0.1", "127.8.9.10", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "198.18.0.1", "192.0.2.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
    "fd12:3456::1", "::ffff:10.0.0.5", "::ffff:169.254.169.254", "::ffff:127.0.0.1", "2002:a00:5::1",
    "64:ff9b::a00:5", "ff02::1",
]


@pytest.fixture
def dns(monkeypatch):
    """A resolver answering from this table only; connections are recorded and refused."""
    table: dict[str, list[str]] = {}

    def resolve(host, port):
        if host not in table:
            raise socket.gaierror("no such name")
        return list(table[host])

    monkeypatch.setattr(destinations, "resolve", resolve)
    return table


@pytest.fixture
def no_connections(monkeypatch):
    opened = []

    def connect(address, *args, **kwargs):
        opened.append(address)
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(destinations.socket, "create_connection", connect)
    return opened


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_not_public(address):
    assert not destinations.is_public(address)


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_are(address):
    assert destinations.is_public(address)


@pytest.mark.parametrize("url, addresses", [
    ("https://10.0.0.5/hook", ["10.0.0.5"]),
    ("https://metadata.internal/computeMetadata/v1/", ["169.254.169.254"]),
    ("https://redis/", ["172.18.0.3"]),
    ("https://mixed.example.org/hook", [PUBLIC, "10.0.0.9"]),  # every address counts
    ("https://v6.example.org/hook", ["::ffff:192.168.0.1"]),
    ("https://2130706433/hook", ["127.0.0.1"]),  # 127.0.0.1 as a number
    ("http://127.0.0.1:6379/", ["127.0.0.1"]),
    ("https://nowhere.example.org/hook", None),  # unresolvable
])
def test_the_admin_refuses_non_public_destinations(client, org, settings, dns, url, addresses):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    if addresses is not None:
        dns[url.split("/")[2].split(":")[0]] = addresses
    client.force_login(factories.make_user(org=org, role="admin"))
    response = client.post("/admin/webhooks/webhookendpoint/add/", {
        "organization": org.pk, "url": url, "events": ["call.ended"], "is_active": "on",
    })
    assert response.status_code == 200  # the form again, with the error
    (error,) = response.context_data["adminform"].form.errors["url"]
    # Bare names and numbers are not even URLs to Django's URLField; the rest fail on their addresses.
    assert "webhooks go only to" in error or error == "Enter a valid URL."
    assert not WebhookEndpoint.objects.exists()


def test_a_public_destination_is_accepted(client, org, dns):
    dns["ehr.example.org"] = [PUBLIC]
    client.force_login(factories.make_user(org=org, role="admin"))
    response = client.post("/admin/webhooks/webhookendpoint/add/", {
        "organization": org.pk, "url": "https://ehr.example.org/hook", "events": ["call.ended"], "is_active": "on",
    })
    assert response.status_code == 200 and "secrets" in response.context  # the secret's page
    assert WebhookEndpoint.objects.get().url == "https://ehr.example.org/hook"


def _ended_call(org):
    call = factories.make_call(org, factories.make_workflow(org), factories.make_patient(org),
                               status=CallStatus.IN_PROGRESS)
    assert transition(call.pk, CallStatus.COMPLETED, reason="completed")
    return call


def test_a_name_that_turns_private_after_saving_is_not_sent_to(org, dns, no_connections):
    """DNS rebinding: public when saved, internal when sent — refused before any connection."""
    dns["ehr.example.org"] = [PUBLIC]
    endpoint = WebhookEndpoint(organization=org, url="https://ehr.example.org/hook", events=["call.ended"])
    endpoint.full_clean()
    endpoint.save()
    dns["ehr.example.org"] = ["10.1.2.3"]
    _ended_call(org)
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert no_connections == []
    assert delivery.attempts == 1 and delivery.status == "pending" and delivery.last_status_code is None
    assert delivery.last_error.startswith("Not sent:") and "public internet addresses" in delivery.last_error


def test_the_send_connects_to_the_checked_address_and_speaks_to_the_named_host(
    org, dns, fake_receiver, settings, monkeypatch
):
    """The name resolves once, to the checked address; the connection goes there (no second lookup)."""
    assert settings.WEBHOOK_ALLOW_LOOPBACK  # the fake receiver's fixture turns it on
    port = fake_receiver.url.rsplit(":", 1)[1]
    dns["receiver.test"] = ["127.0.0.1"]
    lookups = []
    real_resolve = destinations.resolve
    monkeypatch.setattr(destinations, "resolve", lambda host, p: lookups.append(host) or real_resolve(host, p))
    endpoint = WebhookEndpoint.objects.create(organization=org, url=f"http://receiver.test:{port}/hooks/myrobot",
                                              events=["call.ended"])
    fake_receiver.secret = endpoint.secret
    _ended_call(org)
    lookups.clear()
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert lookups == ["receiver.test"]  # once, for the check; the system resolver never saw the name
    (request,) = fake_receiver.requests
    assert request["headers"]["Host"] == f"receiver.test:{port}"


def test_loopback_is_refused_at_send_time_without_the_allowance(org, fake_receiver, settings):
    endpoint = WebhookEndpoint.objects.create(organization=org, url=fake_receiver.hook_url, events=["call.ended"])
    fake_receiver.secret = endpoint.secret
    settings.WEBHOOK_ALLOW_LOOPBACK = False  # as in production
    _ended_call(org)
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert fake_receiver.requests == []
    assert delivery.last_error.startswith("Not sent:")


def test_a_redirect_is_not_followed_and_no_answer_body_is_kept(org, fake_receiver, client):
    endpoint = WebhookEndpoint.objects.create(organization=org, url=fake_receiver.hook_url, events=["call.ended"])
    fake_receiver.secret = endpoint.secret
    fake_receiver.respond_next("POST /hooks/myrobot", 307, body="secret internal page",
                               headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    _ended_call(org)
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert len(fake_receiver.requests) == 1  # not resent to the Location
    assert delivery.last_status_code == 307 and delivery.status == "pending"
    _key, raw = ApiKey.generate(org)
    listed = client.get("/api/webhooks/deliveries", **auth(raw)).json()["items"]
    assert listed[0]["last_status_code"] == 307
    assert "response_excerpt" not in listed[0] and "secret internal page" not in str(listed)


def test_connection_errors_do_not_say_which_ports_are_open(org, settings, dns):
    """A closed port and a refused connection read alike (no errno, no OS message)."""
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    dns["closed.test"] = ["127.0.0.1"]
    WebhookEndpoint.objects.create(organization=org, url=f"http://closed.test:{port}/", events=["call.ended"])
    _ended_call(org)
    delivery = WebhookDelivery.objects.get()
    services.send_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.last_error == "Could not connect to the receiver, or it closed the connection."


# --- secrets are shown on a page, never in the messages cookie ----------------------------


def _cookies_and_page(response):
    cookies = " ".join(morsel.OutputString() for morsel in response.cookies.values())
    return cookies, response.content.decode()


def test_a_new_webhook_secret_is_on_the_page_and_in_no_cookie(client, org, dns):
    dns["ehr.example.org"] = [PUBLIC]
    client.force_login(factories.make_user(org=org, role="admin"))
    response = client.post("/admin/webhooks/webhookendpoint/add/", {
        "organization": org.pk, "url": "https://ehr.example.org/hook", "events": ["call.ended"], "is_active": "on",
    })
    endpoint = WebhookEndpoint.objects.get()
    cookies, page = _cookies_and_page(response)
    assert response.status_code == 200 and endpoint.secret in page
    assert "no-store" in response["Cache-Control"]
    assert "messages" not in cookies and endpoint.secret not in cookies
    old = endpoint.secret
    response = client.post("/admin/webhooks/webhookendpoint/", {
        "action": "rotate_secret", "_selected_action": [endpoint.pk],
    })
    endpoint.refresh_from_db()
    cookies, page = _cookies_and_page(response)
    assert endpoint.secret != old and endpoint.secret in page
    assert "messages" not in cookies and endpoint.secret not in cookies
    assert endpoint.secret not in client.get("/admin/webhooks/webhookendpoint/").content.decode()


def test_a_new_api_key_is_on_the_page_and_in_no_cookie(client, org):
    client.force_login(factories.make_user(org=org, role="admin"))
    response = client.post("/admin/organizations/apikey/add/", {"organization": org.pk, "name": "Epic"})
    cookies, page = _cookies_and_page(response)
    ((_name, raw),) = response.context["secrets"]
    assert ApiKey.authenticate(raw).name == "Epic" and raw in page
    assert "messages" not in cookies and raw not in cookies
