"""``{% load patient_display %}``: ``{{ patient|label_for:request.user }}`` names a patient as
that user may see them (``patients.display``), where ``{{ patient }}`` would be masked."""

from django import template

from patients import display

register = template.Library()


@register.filter
def label_for(patient, user):
    return display.label_for(user, patient)
