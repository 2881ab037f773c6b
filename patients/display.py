"""Who sees a patient how (the policy; the masks themselves live with the masking code).

One answer per user and organisation, used by every admin page, message, list
and export: staff and admins see names and phones in clear, viewers masked —
the same on a heading, a banner, a breadcrumb or a list row.
"""

from __future__ import annotations

from organizations import access


def sees(user, patient) -> bool:
    return access.sees_phi(user, patient.organization_id)


def name_for(user, patient) -> str:
    if patient is None:
        return "Unknown caller"
    return patient.full_name if sees(user, patient) else patient.masked_name


def phone_for(user, patient) -> str:
    if patient is None:
        return ""
    return patient.phone if sees(user, patient) else patient.masked_phone


def label_for(user, patient) -> str:
    """Name and EHR id, as a heading or a banner names the patient."""
    if patient is None:
        return "Unknown caller"
    ref = f" ({patient.external_id})" if patient.external_id else ""
    return f"{name_for(user, patient)}{ref}"
