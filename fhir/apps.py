from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "fhir"
    verbose_name = "FHIR (EHR appointments)"

    def ready(self):
        # calls never imports fhir: it sends `call_ended` inside the final
        # transition's transaction, and this app writes its outbox there.
        from calls.signals import call_ended
        from . import writeback  # noqa: I001 - app registry must be ready

        call_ended.connect(writeback.on_call_ended, dispatch_uid="fhir.call_ended")
