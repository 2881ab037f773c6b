"""Admin pages show each member only their organisations, with their role's rights."""

import pytest

from calls.models import CallSession
from organizations.models import ApiKey, OrganizationMembership
from tests import factories


@pytest.fixture
def two_orgs(db):
    a = factories.make_org("north", name="North Clinic")
    b = factories.make_org("south", name="South Clinic")
    wa = factories.make_workflow(a, slug="remind-a")
    wb = factories.make_workflow(b, slug="remind-b")
    pa = factories.make_patient(a, first_name="Alice", last_name="Northman", phone="+14155550111")
    pb = factories.make_patient(b, first_name="Bruno", last_name="Southman", phone="+14155550122")
    ca = factories.make_call(a, wa, pa)
    cb = factories.make_call(b, wb, pb)
    return dict(a=a, b=b, wa=wa, wb=wb, pa=pa, pb=pb, ca=ca, cb=cb)


def login(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["admin", "staff", "viewer"])
def test_member_sees_only_their_org_in_every_list(client, two_orgs, role):
    user = factories.make_user(org=two_orgs["a"], role=role)
    login(client, user)
    pages = {
        "/admin/patients/patient/": (two_orgs["pa"], two_orgs["pb"]),
        "/admin/organizations/workflow/": (two_orgs["wa"], two_orgs["wb"]),
        "/admin/calls/callsession/": (two_orgs["ca"], two_orgs["cb"]),
    }
    for url, (mine, theirs) in pages.items():
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert f"/{mine.pk}/change/" in resp.content.decode(), url
        assert f"/{theirs.pk}/change/" not in resp.content.decode(), url
    # another organisation's object is not found
    assert client.get(f"/admin/patients/patient/{two_orgs['pb'].pk}/change/").status_code == 302
    assert client.get(f"/admin/calls/callsession/{two_orgs['cb'].pk}/change/").status_code == 302


def test_viewer_sees_names_and_phones_masked(client, two_orgs):
    login(client, factories.make_user(org=two_orgs["a"], role="viewer"))
    body = client.get("/admin/patients/patient/").content.decode()
    assert "Northman" not in body and "+14155550111" not in body
    assert "A•••• N•••••••" in body
    detail = client.get(f"/admin/patients/patient/{two_orgs['pa'].pk}/change/").content.decode()
    assert "Northman" not in detail and "+14155550111" not in detail


def test_viewer_cannot_change_patients_staff_can(client, two_orgs):
    pa = two_orgs["pa"]
    login(client, factories.make_user(org=two_orgs["a"], role="viewer"))
    resp = client.post(f"/admin/patients/patient/{pa.pk}/change/", {"first_name": "Eve"})
    assert resp.status_code == 403
    assert client.get("/admin/patients/patient/add/").status_code == 403

    client.logout()
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    resp = client.post(
        f"/admin/patients/patient/{pa.pk}/change/",
        {
            "organization": pa.organization_id,
            "external_id": pa.external_id,
            "first_name": "Alicia",
            "last_name": pa.last_name,
            "phone": "+1 415 555 0111",
            "preferred_language": "en",
            "timezone": "",
            "data": "{}",
            "consent_to_call": "on",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    pa.refresh_from_db()
    assert pa.first_name == "Alicia" and pa.phone == "+14155550111"


def test_bad_phone_in_admin_form_names_the_field(client, two_orgs):
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    resp = client.post(
        "/admin/patients/patient/add/",
        {"organization": two_orgs["a"].pk, "first_name": "X", "phone": "555", "preferred_language": "en", "data": "{}"},
    )
    assert resp.status_code == 200
    assert "not a valid phone number" in resp.content.decode() or "not a phone number" in resp.content.decode()


def test_staff_cannot_add_a_patient_to_another_org(client, two_orgs):
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    resp = client.post(
        "/admin/patients/patient/add/",
        {"organization": two_orgs["b"].pk, "first_name": "X", "phone": "+14155550199", "preferred_language": "en", "data": "{}"},
    )
    assert resp.status_code == 200  # form error: not a valid choice
    assert not two_orgs["b"].patients.filter(first_name="X").exists()


def test_workflows_are_read_only_for_staff_and_writable_for_admins(client, two_orgs):
    wa = two_orgs["wa"]
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    assert client.get(f"/admin/organizations/workflow/{wa.pk}/change/").status_code == 200
    assert client.post(f"/admin/organizations/workflow/{wa.pk}/change/", {"name": "x"}).status_code == 403
    client.logout()
    login(client, factories.make_user(org=two_orgs["a"], role="admin"))
    assert client.get("/admin/organizations/workflow/add/").status_code == 200


def test_members_and_api_keys_are_for_admins_only(client, two_orgs):
    for role, expected in [("staff", 403), ("viewer", 403), ("admin", 200)]:
        client.logout()
        login(client, factories.make_user(org=two_orgs["a"], role=role))
        assert client.get("/admin/organizations/apikey/").status_code == expected, role
        assert client.get("/admin/organizations/organizationmembership/").status_code == expected, role


def test_admin_creates_a_key_sees_it_once_and_can_revoke_it(client, two_orgs):
    login(client, factories.make_user(org=two_orgs["a"], role="admin"))
    resp = client.post("/admin/organizations/apikey/add/", {"organization": two_orgs["a"].pk, "name": "Epic"}, follow=True)
    assert resp.status_code == 200
    ((_name, raw),) = resp.context["secrets"]  # on the page, once (not in the messages cookie)
    assert raw.startswith("mr_") and raw in resp.content.decode()
    key = ApiKey.objects.get(name="Epic")
    assert ApiKey.authenticate(raw) == key
    assert raw not in client.get(f"/admin/organizations/apikey/{key.pk}/change/").content.decode()
    client.post("/admin/organizations/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert ApiKey.authenticate(raw) is None


def test_admin_of_one_org_cannot_see_the_others_keys_or_members(client, two_orgs):
    other_key, _ = ApiKey.generate(two_orgs["b"], name="South key")
    login(client, factories.make_user(org=two_orgs["a"], role="admin"))
    body = client.get("/admin/organizations/apikey/").content.decode()
    assert "South key" not in body
    assert client.get(f"/admin/organizations/apikey/{other_key.pk}/change/").status_code == 302


def test_webhook_secret_is_write_only(client, two_orgs):
    org = two_orgs["a"]
    org.dialin_webhook_secret = "c2VjcmV0LXNlY3JldA=="
    org.save()
    login(client, factories.make_user(org=org, role="admin"))
    body = client.get(f"/admin/organizations/organization/{org.pk}/change/").content.decode()
    assert "c2VjcmV0LXNlY3JldA==" not in body


def test_superuser_sees_all(client, two_orgs):
    login(client, factories.make_user(is_superuser=True))
    body = client.get("/admin/patients/patient/").content.decode()
    assert f"/{two_orgs['pa'].pk}/change/" in body and f"/{two_orgs['pb'].pk}/change/" in body


def test_member_of_two_orgs_sees_the_union_with_per_org_rights(client, two_orgs):
    user = factories.make_user(org=two_orgs["a"], role="staff")
    OrganizationMembership.objects.create(organization=two_orgs["b"], user=user, role="viewer")
    login(client, user)
    body = client.get("/admin/patients/patient/").content.decode()
    assert "Northman" in body  # staff at North
    assert "Southman" not in body and "B•••• S•••••••" in body  # viewer at South


def test_viewer_call_page_hides_transcript(client, two_orgs):
    ca = two_orgs["ca"]
    CallSession.objects.filter(pk=ca.pk).update(transcript=[{"role": "user", "text": "my secret symptom"}])
    login(client, factories.make_user(org=two_orgs["a"], role="viewer"))
    body = client.get(f"/admin/calls/callsession/{ca.pk}/change/").content.decode()
    assert "my secret symptom" not in body and "Northman" not in body
    client.logout()
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    body = client.get(f"/admin/calls/callsession/{ca.pk}/change/").content.decode()
    assert "my secret symptom" in body


def test_call_event_log_is_scoped_and_hides_transcripts_from_viewers(client, two_orgs):
    from calls.models import CallEvent
    from django.utils import timezone

    ca, cb = two_orgs["ca"], two_orgs["cb"]
    CallEvent.objects.create(call=ca, at=timezone.now(), kind="transcript", seq=1, data={"role": "user", "text": "north secret"})
    CallEvent.objects.create(call=ca, at=timezone.now(), kind="joined", seq=2, data={})
    CallEvent.objects.create(call=cb, at=timezone.now(), kind="joined", seq=1, data={})
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    body = client.get("/admin/calls/callevent/").content.decode()
    assert str(ca.pk)[:8] in body and str(cb.pk)[:8] not in body
    assert "transcript" in body
    assert "1 call event" in client.get("/admin/calls/callevent/?kind=transcript").content.decode()
    client.logout()
    login(client, factories.make_user(org=two_orgs["a"], role="viewer"))
    body = client.get("/admin/calls/callevent/?kind=transcript").content.decode()
    assert "0 call events" in body
    ev = CallEvent.objects.get(kind="transcript")
    assert client.get(f"/admin/calls/callevent/{ev.pk}/change/").status_code == 302


def test_list_filters_name_only_the_users_own_organisations_and_workflows(client, two_orgs):
    login(client, factories.make_user(org=two_orgs["a"], role="staff"))
    for url in ["/admin/calls/callsession/", "/admin/patients/patient/", "/admin/organizations/workflow/"]:
        body = client.get(url).content.decode()
        assert "South Clinic" not in body, url
        assert "Remind B" not in body, url
