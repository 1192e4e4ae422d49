"""Secrets at rest: the key file, sealing values with AES-GCM, and the
stored form of a ``Secret`` (ciphertexts and metadata only).

Pure apart from the key file: no store, no driver, no engine. The service
writes sealed records; the controller opens them at container creation.
"""

from portway.secrets.keyfile import default_key_file, load_or_create_key
from portway.secrets.sealing import SecretKey, SecretUnreadableError
from portway.secrets.stored import (
    SecretInfo,
    info_of,
    open_values,
    seal_values,
)

__all__ = [
    "SecretInfo",
    "SecretKey",
    "SecretUnreadableError",
    "default_key_file",
    "info_of",
    "load_or_create_key",
    "open_values",
    "seal_values",
]
