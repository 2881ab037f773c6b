from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        # calls never imports webhooks: it sends `call_ended` inside the
        # transaction of the final transition and this app writes its outbox.
        # (Imported here: models may load only once the app registry is ready.)
        from calls.signals import call_ended, patient_opted_out
        from . import services  # noqa: I001 - app registry must be ready (see above)

        call_ended.connect(services.on_call_ended, dispatch_uid="webhooks.call_ended")
        patient_opted_out.connect(services.on_patient_opted_out, dispatch_uid="webhooks.patient_opted_out")
