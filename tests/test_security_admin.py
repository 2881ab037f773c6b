"""Admin pages cannot be used to probe hidden fields (issue 10, items 1, 2, 6 and 8).

Every list page takes only the filters and search it declares; any other query
parameter gets the same answer whatever its value. Name and phone search works
only where the user sees names and phones in clear.
"""

import pytest
from django.utils import timezone

from calls.models import CallEvent
from organizations.models import OrganizationMembership
from tests import factories

SECRET = "c2VjcmV0LWtleQ=="

# (list page, a hidden field's lookup that a probe would use, two values)
PROBES = [
    ("/admin/organizations/organization/", "dialin_webhook_secret__regex", "^c", "^z"),
    ("/admin/organizations/organization/", "dialin_webhook_secret__startswith", "c2V", "zzz"),
    ("/admin/organizations/organizationmembership/", "user__password__startswith", "pbkdf2", "zzz"),
    ("/admin/organizations/apikey/", "key_hash__startswith", "a", "b"),
    ("/admin/organizations/workflow/", "instructions__icontains", "remind", "zzz"),
    ("/admin/patients/patient/", "first_name", "Ada", "Zed"),
    ("/admin/patients/patient/", "date_of_birth__year", "1815", "1900"),
    ("/admin/patients/patient/", "data__icontains", "dentist", "zzz"),
    ("/admin/calls/callsession/", "transcript__icontains", "secret", "zzz"),
    ("/admin/calls/callsession/", "outcome__icontains", "confirmed", "zzz"),
    ("/admin/calls/callsession/", "patient__first_name", "Ada", "Zed"),
    ("/admin/calls/callsession/", "from_number__startswith", "+1415", "+44"),
    ("/admin/calls/callevent/", "data__icontains", "Ada", "zzz"),
    ("/admin/calls/callevent/", "call__organization__dialin_webhook_secret__regex", "^c", "^z"),
]


@pytest.fixture
def world(db):
    a = factories.make_org("north", name="North Clinic")
    b = factories.make_org("south", name="South Clinic")
    a.dialin_webhook_secret = SECRET
    a.save()
    wa = factories.make_workflow(a, slug="remind-a")
    wb = factories.make_workflow(b, slug="remind-b")
    pa = factories.make_patient(a, first_name="Ada", last_name="Lovelace", phone="+14155550111")
    pa.data = {"appointment": "dentist"}
    pa.save()
    pb = factories.make_patient(b, first_name="Bruno", last_name="Southman", phone="+14155550122")
    ca = factories.make_call(a, wa, pa, transcript=[{"role": "user", "text": "secret"}],
                             outcome={"result": "confirmed", "notes": "Ada said yes"})
    CallEvent.objects.create(call=ca, at=timezone.now(), kind="dialout_attempt", seq=1,
                             data={"displayName": "Ada Lovelace", "note": "from Ada", "attempt": 1})
    return dict(a=a, b=b, wa=wa, wb=wb, pa=pa, pb=pb, ca=ca)


def _answer(client, url, params):
    resp = client.get(url, params)
    return resp.status_code, resp.content if resp.status_code == 200 else b""


@pytest.mark.parametrize("url,lookup,one,other", PROBES, ids=[f"{p[0].split('/')[3]}-{p[1]}" for p in PROBES])
@pytest.mark.parametrize("role", ["superuser", "admin", "viewer"])
def test_undeclared_filters_get_the_same_answer_whatever_the_value(client, world, url, lookup, one, other, role):
    if role == "superuser":
        user = factories.make_user(is_superuser=True)
    else:
        user = factories.make_user(org=world["a"], role=role)
    client.force_login(user)
    first, second = client.get(url, {lookup: one}), client.get(url, {lookup: other})
    assert first.status_code == second.status_code
    assert first.status_code in (400, 403), (first.status_code, url, lookup)


@pytest.mark.parametrize("url,params", [
    ("/admin/calls/callsession/", {"status__exact": "queued"}),
    ("/admin/calls/callsession/", {"created_at__year": "2026"}),
    ("/admin/calls/callsession/", {"q": "north", "o": "2"}),
    ("/admin/calls/callevent/", {"kind": "dialout_attempt", "at__year": "2026", "at__month": "11"}),
    ("/admin/patients/patient/", {"consent_to_call__exact": "1", "q": "x"}),
    ("/admin/organizations/apikey/", {"revoked_at__isempty": "1"}),
    ("/admin/organizations/organization/", {"is_active__exact": "1"}),
])
def test_declared_filters_still_work(client, world, url, params):
    client.force_login(factories.make_user(is_superuser=True))
    assert client.get(url, params).status_code == 200


def _patient_ids(client, term) -> set[int]:
    resp = client.get("/admin/patients/patient/", {"q": term})
    assert resp.status_code == 200
    return set(resp.context["cl"].result_list.values_list("pk", flat=True))


def test_mixed_role_user_finds_by_name_only_where_names_are_in_clear(client, world):
    """Staff in B, viewer in A: A's patients are not found by name or phone."""
    user = factories.make_user(org=world["b"], role="staff")
    OrganizationMembership.objects.create(organization=world["a"], user=user, role="viewer")
    client.force_login(user)
    assert _patient_ids(client, "Lovelace") == set()
    assert _patient_ids(client, "Ada") == set()
    assert _patient_ids(client, "+14155550111") == set()
    assert _patient_ids(client, "Southman") == {world["pb"].pk}
    assert _patient_ids(client, "+14155550122") == {world["pb"].pk}
    # the EHR id is searchable everywhere the user may look
    world["pa"].external_id = "EHR-A1"
    world["pa"].save()
    assert _patient_ids(client, "EHR-A1") == {world["pa"].pk}


def test_viewer_cannot_sort_by_the_masked_name(client, world):
    client.force_login(factories.make_user(org=world["a"], role="viewer"))
    resp = client.get("/admin/patients/patient/")
    assert resp.status_code == 200
    assert "sortable column-name" not in resp.content.decode()


def test_org_admin_membership_form_lists_only_relevant_users(client, world):
    """"Add" makes a new person (no picker of the deployment's users at all); the
    change form shows the member read-only; a posted stranger's id is never attached."""
    org_admin = factories.make_user("northadmin", org=world["a"], role="admin")
    stranger = factories.make_user("southstaff", org=world["b"], role="staff")
    client.force_login(org_admin)
    resp = client.get("/admin/organizations/organizationmembership/add/")
    assert resp.status_code == 200
    form = resp.context["adminform"].form
    assert "user" not in form.fields
    assert stranger.username not in resp.content.decode()
    membership = org_admin.memberships.get()
    resp = client.get(f"/admin/organizations/organizationmembership/{membership.pk}/change/")
    assert resp.status_code == 200 and stranger.username not in resp.content.decode()
    # a stranger's id posted to "add" does not make them a member of this organisation
    client.post("/admin/organizations/organizationmembership/add/",
                {"user": stranger.pk, "organization": world["a"].pk, "role": "viewer"})
    assert not stranger.memberships.filter(organization=world["a"]).exists()


def test_viewer_call_event_page_shows_only_allowed_data(client, world):
    client.force_login(factories.make_user(org=world["a"], role="viewer"))
    event = CallEvent.objects.get(kind="dialout_attempt")
    body = client.get(f"/admin/calls/callevent/{event.pk}/change/").content.decode()
    assert "Ada" not in body and "Lovelace" not in body
    assert "attempt" in body


def test_viewer_shaping_is_an_allow_list():
    """A key nobody listed (a bot's `displayName`, `note`, `message`) never reaches a viewer."""
    from calls.shaping import shape_call, shape_event

    event = {"seq": 3, "event": "dialin_connected", "at": "2026-01-01T00:00:00+00:00",
             "data": {"displayName": "Ada Lovelace", "note": "Ada", "message": "hi Ada", "sipFrom": "+14155550111"}}
    assert shape_event(event, sees=False)["data"] == {}
    event = {"seq": 4, "event": "error", "at": None, "data": {"message": "Ada Lovelace hung up", "fatal": True}}
    assert shape_event(event, sees=False)["data"] == {"fatal": True}
    event = {"seq": 5, "event": "ended", "at": None, "data": {"reason": "Ada Lovelace", "extra": {"name": "Ada"}}}
    assert shape_event(event, sees=False)["data"] == {}
    event = {"seq": 6, "event": "dtmf", "at": None, "data": {"digits": "1234"}}
    assert shape_event(event, sees=False)["data"] == {}
    assert shape_event({"seq": 7, "event": "transcript", "at": None, "data": {"text": "x"}}, sees=False) is None
    call = {"session_id": "s", "organization_id": 1, "status": "completed", "patient": {"name": "Ada Lovelace",
            "masked_name": "A•• L•••", "phone": "+14155550111", "masked_phone": "+1•••11"},
            "outcome": {"result": "confirmed", "notes": "Ada"}, "error": "", "caller_name": "Ada Lovelace",
            "workflow": {"id": 1, "slug": "w", "name": "W", "instructions": "Call Ada"}}
    shaped = shape_call(call, sees=False)
    assert "Ada" not in str(shaped) and "0111" not in str(shaped)
    assert shaped["outcome"] == {"result": "confirmed"} and shaped["status"] == "completed"
