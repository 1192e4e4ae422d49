"""The stored form of a ``Secret``: what the store holds, and back.

A record's spec is ``{"keyId", "revision", "fingerprint", "data": {key:
{"sealed", "size"}}}``: base64 ciphertexts and metadata, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portway.errors import InputError
from portway.secrets.sealing import SecretKey, SecretUnreadableError
from portway.spec.model import NAME_MAX, NAME_RE, SECRET_KEY_RE

#: Kubernetes' limit for one Secret; also keeps the store's rows small
MAX_SECRET_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its values."""

    namespace: str
    name: str
    keys: tuple[str, ...]
    sizes: Mapping[str, int]
    version: int  # revision: bumps when a value changes
    created_at: float
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "keys": list(self.keys),
            "sizes": dict(self.sizes),
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not NAME_RE.match(name):
        raise InputError(
            f"secret name {name!r} is invalid: use at most {NAME_MAX} lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return name


def check_data(name: str, data: Mapping[str, bytes]) -> None:
    if not data:
        raise InputError(f"secret {name!r} needs at least one key (e.g. --from-literal KEY=VALUE)")
    for key in data:
        if not SECRET_KEY_RE.match(key) or key in (".", ".."):
            raise InputError(
                f"secret {name!r}: key {key!r} is invalid: use 1-253 letters, digits, "
                "'-', '_' or '.' (it becomes a file name)"
            )
    total = sum(len(v) for v in data.values())
    if total > MAX_SECRET_BYTES:
        raise InputError(
            f"secret {name!r} holds {total} bytes; the limit is {MAX_SECRET_BYTES} (1 MiB)"
        )


def seal_values(
    key: SecretKey,
    namespace: str,
    name: str,
    data: Mapping[str, bytes],
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored spec for ``data``; the revision bumps only if a value
    changed (so ``secret create --update`` with the same values rolls nothing)."""
    check_name(name)
    check_data(name, data)
    fingerprint = key.fingerprint(namespace, name, data)
    revision = 1
    if previous is not None:
        revision = int(previous.get("revision", 0))
        if previous.get("fingerprint") != fingerprint or previous.get("keyId") != key.id:
            revision += 1
    return {
        "keyId": key.id,
        "revision": revision,
        "fingerprint": fingerprint,
        "data": {
            k: {"sealed": key.seal(namespace, name, k, v), "size": len(v)}
            for k, v in sorted(data.items())
        },
    }


def open_values(
    key: SecretKey, namespace: str, name: str, spec: Mapping[str, Any]
) -> dict[str, bytes]:
    """Every value of a stored secret; raises SecretUnreadableError (naming
    the key file) if the key does not open them."""
    stored_id = spec.get("keyId")
    if stored_id != key.id:
        raise SecretUnreadableError(
            f"secret {namespace}/{name} cannot be decrypted with key file {key.path}: "
            f"it was sealed with key {stored_id!r}, this file holds key {key.id!r}; was the "
            "key replaced? Restore the key file from its backup, or create the secret again"
        )
    data = spec.get("data") or {}
    return {k: key.open(namespace, name, k, str(v.get("sealed", ""))) for k, v in data.items()}


def info_of(
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    created_at: float,
    updated_at: float,
) -> SecretInfo:
    data: Mapping[str, Any] = spec.get("data") or {}
    return SecretInfo(
        namespace=namespace,
        name=name,
        keys=tuple(sorted(data)),
        sizes={k: int(v.get("size", 0)) for k, v in sorted(data.items())},
        version=int(spec.get("revision", 1)),
        created_at=created_at,
        updated_at=updated_at,
    )


def keys_of(spec: Mapping[str, Any]) -> frozenset[str]:
    return frozenset((spec.get("data") or {}).keys())


def fingerprint_of(spec: Mapping[str, Any]) -> str:
    return str(spec.get("fingerprint", ""))
