"""Small admin frictions: one form for a new staff member, lists not JSON, the menu
clinic staff see, and a failed start that says what to do."""

from __future__ import annotations

import pytest
from django import forms
from django.contrib.auth import get_user_model

from organizations.models import OrganizationMembership, Workflow
from tests import factories

pytestmark = pytest.mark.django_db

ADD_MEMBER = "/admin/organizations/organizationmembership/add/"


def test_an_org_admin_adds_a_staff_member_in_one_form(client, org, other_org):
    client.force_login(factories.make_user(org=org, role="admin"))
    form = client.get(ADD_MEMBER).content.decode()
    assert 'name="username"' in form and 'name="password1"' in form and 'name="role"' in form
    assert other_org.name not in form  # only organisations they manage
    resp = client.post(ADD_MEMBER, {
        "username": "nina-nurse", "email": "nina@example.org", "first_name": "Nina", "last_name": "Nurse",
        "password1": "a-long-password-1", "password2": "a-long-password-1", "organization": org.pk, "role": "staff",
    })
    assert resp.status_code == 302, resp.content.decode()[:2000]
    user = get_user_model().objects.get(username="nina-nurse")
    assert user.is_staff and not user.is_superuser and user.check_password("a-long-password-1")
    assert OrganizationMembership.objects.get(user=user).organization == org
    # and she can log in to the admin straight away
    client.logout()
    resp = client.post("/admin/login/?next=/admin/", {"username": "nina-nurse", "password": "a-long-password-1"})
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_one_form_refuses_another_org_a_taken_name_and_leaves_nothing_half_made(client, org, other_org):
    client.force_login(factories.make_user("olga", org=org, role="admin"))
    base = {"password1": "a-long-password-1", "password2": "a-long-password-1", "role": "staff"}
    resp = client.post(ADD_MEMBER, {**base, "username": "x-user", "organization": other_org.pk})
    assert resp.status_code == 200 and "Select a valid choice" in resp.content.decode()
    resp = client.post(ADD_MEMBER, {**base, "username": "olga", "organization": org.pk})
    assert "That username is taken" in resp.content.decode()
    resp = client.post(ADD_MEMBER, {**base, "username": "y-user", "organization": org.pk, "password2": "other-password-2"})
    assert "The two passwords differ" in resp.content.decode()
    assert not get_user_model().objects.filter(username__in=["x-user", "y-user"]).exists()
    # staff (not admins) of the organisation cannot add anyone
    client.force_login(factories.make_user(org=org, role="staff"))
    assert client.get(ADD_MEMBER).status_code == 403


def test_outcome_results_are_edited_as_lines(client, org, workflow):
    client.force_login(factories.make_user(org=org, role="admin"))
    url = f"/admin/organizations/workflow/{workflow.pk}/change/"
    page = client.get(url).content.decode()
    assert '<textarea name="outcome_results"' in page and "confirmed\nrescheduled" in page
    # What the form shows, sent back as a browser would, with new outcome results typed in.
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    data["outcome_results"] = "booked\n  no_show \n\ncalled_back"
    resp = client.post(url, data)
    assert resp.status_code == 302, resp.content.decode()[:3000]
    assert Workflow.objects.get(pk=workflow.pk).outcome_results == ["booked", "no_show", "called_back"]
    resp = client.post(url, {**data, "outcome_results": "booked\nNot Valid!"})
    assert "Not a valid name: Not Valid!" in resp.content.decode()
    assert Workflow.objects.get(pk=workflow.pk).outcome_results == ["booked", "no_show", "called_back"]


def test_window_days_and_retry_reasons_are_checkboxes(client, org, workflow):
    client.force_login(factories.make_user(org=org, role="admin"))
    url = f"/admin/organizations/workflow/{workflow.pk}/change/"
    page = client.get(url).content.decode()
    assert 'type="checkbox" name="window_days" value="6"' in page and " Saturday</label>" in page
    assert 'type="checkbox" name="retry_on" value="busy"' in page
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    data["window_days"] = ["1", "3", "5"]
    data["retry_on"] = ["busy", "no_answer"]
    resp = client.post(url, data)
    assert resp.status_code == 302, resp.content.decode()[:3000]
    saved = Workflow.objects.get(pk=workflow.pk)
    assert saved.window_days == [1, 3, 5] and sorted(saved.retry_on) == ["busy", "no_answer"]


def test_call_events_are_not_a_menu_item_for_clinic_staff(client, org):
    client.force_login(factories.make_user(org=org, role="staff"))
    assert "Call events" not in client.get("/admin/").content.decode()
    client.force_login(factories.make_user(is_superuser=True))
    assert "Call events" in client.get("/admin/").content.decode()


def test_one_spelling_of_organisation(client, org):
    client.force_login(factories.make_user(is_superuser=True))
    for url in ["/admin/", "/admin/organizations/organization/", "/admin/patients/patient/",
                "/admin/calls/callsession/", "/admin/organizations/workflow/"]:
        body = client.get(url).content.decode()
        assert "Organization" not in body.replace("organizations/", ""), url
        assert "rganisation" in body, url
