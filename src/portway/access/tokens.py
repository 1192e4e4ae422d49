"""Bearer tokens: ``pw_<id>_<secret>``.

``id`` (8 hex characters) names the stored record, so a lookup is one read by
key; ``secret`` is 32 random bytes, URL-safe base64. Only ``sha256(secret)``
is stored. A fast hash is right here: the secret has 256 bits of entropy, so
there is nothing for a slow password hash to protect against guessing, and
authentication stays cheap on every request. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from portway.errors import InputError, UnauthenticatedError

PREFIX = "pw"
ID_HEX_CHARS = 8
SECRET_BYTES = 32

_TOKEN = re.compile(r"pw_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{43})")
_TTL = re.compile(r"(?P<number>\d+)(?P<unit>[smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: What every rejected token is told: the same words whatever was wrong with it.
INVALID = "invalid bearer token"


@dataclass(frozen=True)
class TokenParts:
    token_id: str
    secret: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"TokenParts(token_id={self.token_id!r}, secret=<hidden>)"


def generate() -> tuple[str, TokenParts]:
    """A new random token: (the string to hand out once, its parts)."""
    parts = TokenParts(secrets.token_hex(ID_HEX_CHARS // 2), secrets.token_urlsafe(SECRET_BYTES))
    return f"{PREFIX}_{parts.token_id}_{parts.secret}", parts


def parse(token: str) -> TokenParts:
    """Split a token; anything not shaped like one is ``UnauthenticatedError``
    with a message that repeats none of it."""
    match = _TOKEN.fullmatch(token.strip())
    if match is None:
        raise UnauthenticatedError(f"{INVALID}: expected pw_<id>_<secret>")
    return TokenParts(match["id"], match["secret"])


def parse_authorization(header: str | None) -> TokenParts:
    """The token in an HTTP ``Authorization: Bearer <token>`` header value."""
    if not header:
        raise UnauthenticatedError("no bearer token: send 'Authorization: Bearer pw_<id>_<secret>'")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise UnauthenticatedError("the Authorization header must be 'Bearer pw_<id>_<secret>'")
    return parse(value)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def is_expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and now >= expires_at


def parse_ttl(value: str, flag: str = "--ttl") -> float | None:
    """``90s``, ``30m``, ``24h``, ``7d`` → seconds; ``never``/``0`` → no expiry."""
    text = value.strip().lower()
    if text in ("never", "0"):
        return None
    match = _TTL.fullmatch(text)
    if match is None or int(match["number"]) == 0:
        raise InputError(
            f"{flag} {value}: expected a positive duration like 90s, 30m, 24h or 7d, or 'never'"
        )
    return float(int(match["number"]) * _UNIT_SECONDS[match["unit"]])
