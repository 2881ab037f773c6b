"""The FHIR app. The maintained models library installs as ``fhir.resources`` (a
namespace package ``fhir``), so this package extends its path to find it."""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
