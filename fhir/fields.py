"""The field that holds the connection's secrets (the SMART private key, the tool
webhook's signing secret): encrypted at rest with the project's key ring."""

from myrobot.crypto import EncryptedTextField as SecretTextField  # noqa: F401
