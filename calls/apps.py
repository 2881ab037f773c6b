from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"

    def ready(self):
        from .access_changes import connect_signals

        connect_signals()
