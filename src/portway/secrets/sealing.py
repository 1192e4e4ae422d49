"""AES-256-GCM sealing of one value of one secret.

Every value gets a fresh 96-bit nonce. The associated data names the
namespace, secret and key, so a ciphertext copied into another secret (or
under another key name) fails authentication instead of decrypting there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from portway.errors import PortwayError

KEY_BYTES = 32
NONCE_BYTES = 12
#: bumps if the sealed format or the associated data ever change
FORMAT = "v1"


class SecretUnreadableError(PortwayError):
    """A sealed value does not open with this key: the key was replaced, or
    the stored ciphertext was changed or moved. Never garbage, always this."""

    exit_code = 2


def _associated(namespace: str, name: str, key: str) -> bytes:
    # NUL cannot occur in names or keys (validated), so the fields cannot run together
    return f"portway-secret-{FORMAT}\0{namespace}\0{name}\0{key}".encode()


class SecretKey:
    """The installation's secret key. ``repr`` never shows it."""

    def __init__(self, raw: bytes, path: Path) -> None:
        if len(raw) != KEY_BYTES:
            raise ValueError(f"a secret key has {KEY_BYTES} bytes")
        self._aead = AESGCM(raw)
        # Separate keys for separate jobs: the AEAD key never feeds a MAC.
        self._mac_key = hmac.new(raw, b"portway fingerprint key", hashlib.sha256).digest()
        self.id = hmac.new(raw, b"portway key id", hashlib.sha256).hexdigest()[:12]
        """Public name of the key, stored beside ciphertexts so a replaced key
        is reported as such."""
        self.path = path

    def __repr__(self) -> str:
        return f"SecretKey(id={self.id!r}, path={str(self.path)!r})"

    def seal(self, namespace: str, name: str, key: str, value: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value, _associated(namespace, name, key))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, namespace: str, name: str, key: str, sealed: str) -> bytes:
        try:
            blob = base64.b64decode(sealed, validate=True)
            if len(blob) < NONCE_BYTES + 16:
                raise ValueError("too short")
            return self._aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(namespace, name, key)
            )
        except (InvalidTag, ValueError):
            raise SecretUnreadableError(
                f"secret {namespace}/{name} (key {key!r}) cannot be decrypted with key file "
                f"{self.path}: was the key replaced, or the stored secret changed? "
                "Restore the key file from its backup, or create the secret again"
            ) from None

    def fingerprint(self, namespace: str, name: str, data: Mapping[str, bytes]) -> str:
        """A keyed digest of the values: changes when any value changes, and
        tells nothing about them to anyone without the key (an unkeyed hash of
        a short password could be brute-forced from a container label)."""
        mac = hmac.new(self._mac_key, digestmod=hashlib.sha256)
        mac.update(_associated(namespace, name, ""))
        for key in sorted(data):
            value = data[key]
            mac.update(f"\0{key}\0{len(value)}\0".encode())
            mac.update(value)
        return mac.hexdigest()[:16]
