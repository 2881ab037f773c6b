"""CSV upload of a campaign's patients, with django-import-export doing the rows.

Columns: ``external_id`` (a patient of the organisation), and optionally
``first_name``, ``last_name``, ``phone``, ``date_of_birth`` (YYYY-MM-DD). A row
whose patient does not exist creates one from those columns (it needs at least
``first_name`` and ``phone``); a row without ``external_id`` matches a patient
by name, phone and date of birth, else creates one. Existing patients are
never changed by an upload.

All or nothing: the whole file is imported in one transaction that is rolled
back when any row is bad, and the report names each bad row (its line in the
file, counting the header as line 1) and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import tablib
from django.core.exceptions import ValidationError
from django.db import transaction
from import_export import fields, resources

from patients.models import Patient
from patients.phone import try_normalize_phone

from . import services

COLUMNS = ("external_id", "first_name", "last_name", "phone", "date_of_birth")
MAX_ROWS = 20_000
MAX_BYTES = 5 * 1024 * 1024


@dataclass
class ImportReport:
    ok: bool
    rows: int = 0
    created_patients: int = 0
    added_targets: int = 0
    errors: list[str] = field(default_factory=list)


class CampaignPatientResource(resources.ModelResource):
    """One CSV row → one patient of ``organization`` (found, or created when missing)."""

    date_of_birth = fields.Field(attribute="date_of_birth", column_name="date_of_birth")

    class Meta:
        model = Patient
        fields = COLUMNS
        import_id_fields = ()
        clean_model_instances = True
        skip_diff = True
        use_transactions = False

    def __init__(self, organization, **kwargs):
        super().__init__(**kwargs)
        self.organization = organization

    @staticmethod
    def _text(row, name) -> str:
        return str(row.get(name) or "").strip()

    def before_import_row(self, row, **kwargs):
        raw = self._text(row, "date_of_birth")
        if raw:
            try:
                row["date_of_birth"] = dt.date.fromisoformat(raw)
            except ValueError:
                raise ValidationError({"date_of_birth": f"'{raw}' is not a date (YYYY-MM-DD)."})
        else:
            row["date_of_birth"] = None

    def get_instance(self, instance_loader, row):
        patients = Patient.objects.filter(organization=self.organization)
        external_id = self._text(row, "external_id")
        if external_id:
            return patients.filter(external_id=external_id).first()
        phone = try_normalize_phone(self._text(row, "phone"))
        first_name = self._text(row, "first_name")
        if not phone or not first_name:
            return None
        return patients.filter(
            first_name__iexact=first_name, last_name__iexact=self._text(row, "last_name"), phone=phone,
            date_of_birth=row.get("date_of_birth"),
        ).first()

    def init_instance(self, row=None):
        external_id = self._text(row, "external_id")
        if not self._text(row, "first_name") or not self._text(row, "phone"):
            what = f"no patient has the external id '{external_id}'" if external_id else "no external_id"
            raise ValidationError(
                {"external_id": f"{what}; give first_name and phone (and date_of_birth) to create the patient."}
            )
        return Patient(organization=self.organization)

    def skip_row(self, instance, original, row, import_validation_errors=None):
        # Existing patients are used as they are: an upload never changes them.
        return instance.pk is not None

    def import_instance(self, instance, row, **kwargs):
        super().import_instance(instance, row, **kwargs)
        if instance.external_id == "":
            instance.external_id = None


def _describe(errors) -> str:
    if isinstance(errors, ValidationError):
        if hasattr(errors, "error_dict"):
            errors = errors.message_dict
        else:
            return " ".join(errors.messages)
    if isinstance(errors, dict):
        return "; ".join(f"{name}: {' '.join(str(m) for m in msgs)}" for name, msgs in errors.items())
    return str(errors)


def read_csv(data: bytes) -> tablib.Dataset:
    if len(data) > MAX_BYTES:
        raise ValueError(f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("The file is not UTF-8 text.")
    if "\x00" in text:
        raise ValueError("The file contains NUL characters; is it a CSV file?")
    dataset = tablib.Dataset()
    try:
        dataset.load(text, format="csv")
    except Exception as exc:  # noqa: BLE001 - tablib raises many kinds
        raise ValueError(f"The file could not be read as CSV: {exc}")
    headers = [str(h or "").strip().lower() for h in (dataset.headers or [])]
    unknown = [h for h in headers if h not in COLUMNS]
    if unknown or ("external_id" not in headers and not {"first_name", "phone"} <= set(headers)):
        raise ValueError(
            "The first line must name the columns: external_id, and optionally first_name, last_name, phone, "
            "date_of_birth" + (f" (unknown: {', '.join(unknown)})." if unknown else ".")
        )
    dataset.headers = headers
    if dataset.height > MAX_ROWS:
        raise ValueError(f"At most {MAX_ROWS} rows per file.")
    return dataset


def import_targets(campaign, data: bytes) -> ImportReport:
    """Read the CSV, create missing patients and add every row's patient to ``campaign``; all or nothing."""
    try:
        dataset = read_csv(data)
    except ValueError as exc:
        return ImportReport(ok=False, errors=[str(exc)])
    if dataset.height == 0:
        return ImportReport(ok=False, errors=["The file has no rows."])
    resource = CampaignPatientResource(campaign.organization)
    report = ImportReport(ok=False, rows=dataset.height)
    with transaction.atomic():
        result = resource.import_data(dataset, dry_run=False, raise_errors=False, use_transactions=False,
                                      collect_failed_rows=False)
        for invalid in result.invalid_rows:
            report.errors.append(f"Row {invalid.number} (line {invalid.number + 1}): {_describe(invalid.error)}")
        for number, row_errors in result.row_errors():
            for error in row_errors:
                report.errors.append(f"Row {number} (line {number + 1}): {error.error}")
        if report.errors:
            transaction.set_rollback(True)
            return report
        ids = [row.object_id for row in result.rows if row.object_id is not None]
        report.created_patients = result.totals.get("new", 0)
        patients = Patient.objects.filter(organization=campaign.organization, pk__in=ids)
        try:
            report.added_targets = services.add_targets(campaign, patients)
        except services.CallRefused as exc:
            transaction.set_rollback(True)
            report.errors.append(exc.message)
            return report
    report.ok = True
    return report
