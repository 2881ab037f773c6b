from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from .api import api
from .health import healthz, readyz
from .metrics import metrics

admin.site.site_header = "MyRobot"
admin.site.site_title = "MyRobot"
admin.site.index_title = "Voice agents"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="calls:live", permanent=False)),
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (the API docs, errors).
    path("favicon.ico", RedirectView.as_view(url=static("myrobot/favicon.svg"), permanent=True)),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("calls/", include("calls.urls")),
    path("", include("fhir.urls")),
]
