from django.urls import path

from . import views

app_name = "fhir"
urlpatterns = [path("fhir/<slug:org_slug>/jwks.json", views.jwks, name="jwks")]
