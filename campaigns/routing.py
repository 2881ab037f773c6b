from django.urls import path

from calls.routing import browser

from . import consumers

websocket_urlpatterns = [
    path("ws/campaigns/<int:campaign_id>/", browser(consumers.CampaignConsumer.as_asgi())),
]
