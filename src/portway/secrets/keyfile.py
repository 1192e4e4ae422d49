"""The key file: 32 random bytes, created once, mode 0600.

Two processes starting at once must end up with one key: each writes its
candidate to a private temporary file and hard-links it to the final name;
``link`` fails if the name exists, so exactly one candidate wins and the
loser reads the winner's key. A key file is never rewritten.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets as random_source
from pathlib import Path

from portway.errors import InputError
from portway.secrets.sealing import KEY_BYTES, SecretKey

#: first line of a key file; the version lets a later format coexist
HEADER = "portway-secret-key-v1"


def default_key_file() -> Path:
    """``PORTWAY_SECRET_KEY_FILE``, else ``$PORTWAY_HOME/secret.key``
    (``~/.portway/secret.key`` when PORTWAY_HOME is unset)."""
    explicit = os.environ.get("PORTWAY_SECRET_KEY_FILE")
    if explicit:
        return Path(explicit)
    home = Path(os.environ.get("PORTWAY_HOME", Path.home() / ".portway"))
    return home / "secret.key"


def _encode(raw: bytes) -> bytes:
    return f"{HEADER}\n{base64.b64encode(raw).decode()}\n".encode()


def _decode(path: Path, text: bytes) -> bytes:
    lines = text.decode("ascii", errors="replace").split()
    if len(lines) != 2 or lines[0] != HEADER:
        raise InputError(
            f"{path}: not a portway secret key file (expected a first line {HEADER!r}); "
            "restore the key file from your backup"
        )
    try:
        raw = base64.b64decode(lines[1], validate=True)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise InputError(f"{path}: the key is damaged (expected {KEY_BYTES} base64 bytes)")
    return raw


def load_key(path: Path) -> SecretKey:
    """The key in ``path``; raises InputError if it is missing or damaged."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"secret key file {path} does not exist; secrets stored with another key "
            "cannot be read (restore it from your backup, or set PORTWAY_SECRET_KEY_FILE)"
        ) from None
    except OSError as exc:
        raise InputError(f"secret key file {path}: cannot read ({exc.strerror})") from None
    return SecretKey(_decode(path, text), path)


def load_or_create_key(path: Path) -> SecretKey:
    """The key in ``path``, made first if there is none (race-safe)."""
    if path.exists():
        return load_key(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{random_source.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode(random_source.token_bytes(KEY_BYTES)))
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(candidate, path)
        finally:
            candidate.unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"secret key file {path}: cannot create ({exc.strerror})") from None
    return load_key(path)
