from django.urls import path

from . import dashboard, views

app_name = "calls"

urlpatterns = [
    path("live/", views.live_list, name="live"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/export.csv", dashboard.export_csv, name="export"),
    path("<uuid:session_id>/", views.call_detail, name="detail"),
    path("<uuid:session_id>/cancel/", views.cancel, name="cancel"),
]
