"""Signals other apps listen to without ``calls`` importing them.

``call_ended`` is sent by ``calls.state.transition`` inside the transaction
that moves a call to a final status, exactly once per call (the conditional
update lets one transition win). A receiver that writes rows (e.g. the
webhook outbox) therefore commits or rolls back together with the move.
Receivers get ``call_id`` and ``status``.

``patient_opted_out`` is sent by ``calls.opt_out.honour_opt_out`` inside the
transaction that marks the patient do-not-call, once per call. Receivers get
``call_id``, ``patient_id``, ``external_id``, ``organization_id`` and ``at``.
"""

from django.dispatch import Signal

call_ended = Signal()
patient_opted_out = Signal()
