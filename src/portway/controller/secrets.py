"""Secret values for one replica, resolved and opened at container creation.

Only here (and in the driver that writes them to tmpfs) do values exist in
plaintext, and only for the duration of one create: they are not kept on
the reconciler, not logged, and not part of any event or status.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from portway.controller.records import KIND_SECRET
from portway.drivers.secret_files import SecretFile, numeric_owner
from portway.errors import NotFoundError
from portway.secrets import SecretKey, default_key_file, open_values
from portway.secrets.keyfile import load_key
from portway.spec.model import WorkloadSpec
from portway.store import Store


@dataclass(frozen=True)
class Delivery:
    files: tuple[SecretFile, ...]
    #: the values a spec opted in to receive as environment variables
    env: dict[str, str]


class SecretResolver:
    """Opens the secrets a spec references. The key is read on first need
    (an installation with no secret needs no key file)."""

    def __init__(self, store: Store, key_file: Path | None = None) -> None:
        self._store = store
        self._key_file = key_file
        self._key: SecretKey | None = None
        self._lock = threading.Lock()

    def _secret_key(self) -> SecretKey:
        with self._lock:
            if self._key is None:
                self._key = load_key(self._key_file or default_key_file())
            return self._key

    def deliver(self, namespace: str, spec: WorkloadSpec) -> Delivery:
        if not spec.secrets:
            return Delivery((), {})
        key = self._secret_key()
        opened: dict[str, dict[str, bytes]] = {}
        uid, gid = numeric_owner(spec.security.user)
        files: list[SecretFile] = []
        env: dict[str, str] = {}
        for ref in spec.secrets:
            if ref.secret not in opened:
                record = self._store.get(KIND_SECRET, namespace, ref.secret)
                if record is None:
                    raise NotFoundError(
                        f"secret {namespace}/{ref.secret} not found (deleted after apply?); "
                        "create it again with `portway secret create`"
                    )
                opened[ref.secret] = open_values(key, namespace, ref.secret, record.spec)
            values = opened[ref.secret]
            if ref.key not in values:
                raise NotFoundError(
                    f"secret {namespace}/{ref.secret} has no key {ref.key!r} "
                    f"(it has: {', '.join(sorted(values)) or 'none'})"
                )
            value = values[ref.key]
            if ref.mount_path is not None:
                files.append(SecretFile(ref.mount_path, value, ref.mode, uid, gid))
            if ref.env is not None:
                env[ref.env] = value.decode("utf-8", errors="replace")
        return Delivery(tuple(files), env)
