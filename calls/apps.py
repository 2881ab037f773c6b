from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"

    def ready(self):
        # Here, not at the top: models may be imported only once the app registry is ready.
        from .access_changes import connect_signals

        connect_signals()
