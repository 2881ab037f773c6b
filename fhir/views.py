"""GET /fhir/<organisation>/jwks.json: the public key an EHR verifies our client assertions with."""

from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET

from .keys import jwks_for
from .models import FhirConnection


@require_GET
def jwks(request, org_slug: str):
    connection = FhirConnection.objects.filter(organization__slug=org_slug, is_active=True).first()
    if connection is None or not connection.private_key:
        raise Http404("No FHIR connection.")
    response = JsonResponse(jwks_for(connection))
    response["Cache-Control"] = "public, max-age=300"
    return response
