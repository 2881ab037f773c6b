"""Every resource we send is checked against the FHIR models first.

``fhir.resources`` models R5 by default; its ``R4B`` sub-package (4.3.0) is the
R4 line (R4B changed none of Patient, Appointment, Slot, Communication or
Bundle from R4 4.0.1), so that is what we validate with. A payload the models
refuse is a bug on our side: it is never sent.
"""

from __future__ import annotations

from fhir.resources.R4B import __fhir_version__ as MODELS_VERSION  # noqa: F401 - docs and tests read it
from fhir.resources.R4B import get_fhir_model_class


class InvalidResource(ValueError):
    """A resource we built does not validate as FHIR R4."""


def validated(resource: dict) -> dict:
    """``resource`` unchanged when it validates as its ``resourceType``; else InvalidResource."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    try:
        model = get_fhir_model_class(str(kind))
    except ValueError:
        raise InvalidResource(f"unknown resourceType {kind!r}") from None
    try:
        model.model_validate(resource)
    except Exception as exc:  # pydantic's ValidationError, and the models' own checks
        raise InvalidResource(f"{kind} does not validate as FHIR R4: {str(exc)[:240]}") from None
    return resource
