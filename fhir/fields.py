"""The field that holds the SMART private key.

One alias, so the key moves to the encrypted field once it exists without
touching the model's code (a migration then converts the column).
"""

from django.db import models

SecretTextField = models.TextField
