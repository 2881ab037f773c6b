"""Signals other apps listen to without ``calls`` importing them.

``call_ended`` is sent by ``calls.state.transition`` inside the transaction
that moves a call to a final status, exactly once per call (the conditional
update lets one transition win). A receiver that writes rows (e.g. the
webhook outbox) therefore commits or rolls back together with the move.
Receivers get ``call_id`` and ``status``.
"""

from django.dispatch import Signal

call_ended = Signal()
