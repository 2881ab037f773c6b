from django.urls import path

from . import views

app_name = "calls"

urlpatterns = [
    path("live/", views.live_list, name="live"),
    path("<uuid:session_id>/", views.call_detail, name="detail"),
    path("<uuid:session_id>/cancel/", views.cancel, name="cancel"),
]
