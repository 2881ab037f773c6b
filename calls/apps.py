from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"

    def ready(self):
        # Here, not at the top: models may be imported only once the app registry is ready.
        from . import rollup  # (same reason)
        from .access_changes import connect_signals  # (same reason)

        from .retention import connect_signals as connect_retention  # (same reason)

        from . import bot_tools  # (same reason)

        bot_tools.autodiscover()  # every app's bot_tools module registers its tools
        connect_signals()
        connect_retention()  # deleting a patient scrubs their calls
        rollup.connect_signals()  # the dashboard's roll-ups follow metrics events and zone changes
