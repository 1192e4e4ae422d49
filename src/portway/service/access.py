"""Tokens and role bindings in the store, and authentication of a request.

Layout (cluster-scoped, in the ``_cluster`` pseudo-namespace):
- ``Token`` named by its id: ``{user, name, createdAt, expiresAt, revoked,
  hash}``; ``hash`` is sha256 of the secret, the token itself is never stored.
- ``RoleBinding`` named ``<user>.<role>.<namespace>`` (``*`` spelled ``all``):
  ``{user, role, namespace}``. A token carries the bindings of its user.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portway.access import tokens
from portway.access.rbac import ALL_NAMESPACES, Binding, Principal, Role
from portway.controller.records import CLUSTER_NAMESPACE, KIND_CLUSTER
from portway.errors import AlreadyExistsError, InputError, NotFoundError, UnauthenticatedError
from portway.service.app import App
from portway.spec.model import NAME_MAX, NAME_RE
from portway.store import Record

KIND_TOKEN = "Token"  # noqa: S105 (a record kind, not a password)
KIND_ROLE_BINDING = "RoleBinding"
BOOTSTRAP_USER = "admin"
BOOTSTRAP_TOKEN_NAME = "bootstrap-admin"  # noqa: S105 (a label)
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
_BOOTSTRAP_MARKER = "access-bootstrap"

#: How long a successful authentication is reused, in seconds. Revocation,
#: expiry and binding changes made by any process take effect within this;
#: the contract asks for at most 1 s.
AUTH_CACHE_SECONDS = 0.5
_AUTH_CACHE_MAX = 10_000


# --- validation ----------------------------------------------------------


def check_user(user: str, flag: str = "--user") -> str:
    if len(user) > NAME_MAX or not NAME_RE.match(user):
        raise InputError(
            f"{flag} {user!r}: a user name is at most {NAME_MAX} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return user


def check_namespace(namespace: str, flag: str = "--namespace") -> str:
    if namespace == ALL_NAMESPACES:
        return namespace
    if len(namespace) > NAME_MAX or not NAME_RE.match(namespace):
        raise InputError(
            f"{flag} {namespace!r}: expected a namespace name (lowercase letters, digits "
            "and '-') or '*' for every namespace"
        )
    return namespace


def check_role(role: str, flag: str = "--role") -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InputError(f"{flag} {role!r}: expected one of {choices}") from None


def check_token_name(name: str, flag: str = "--name") -> str:
    # names appear in messages and tables: keep them to one plain word
    if not name or len(name) > NAME_MAX or not all(c.isalnum() or c in "-_." for c in name):
        raise InputError(
            f"{flag} {name!r}: a token name is 1 to {NAME_MAX} letters, digits, '-', '_' or '.'"
        )
    return name


# --- role bindings -------------------------------------------------------


def binding_record_name(user: str, role: Role, namespace: str) -> str:
    where = "all" if namespace == ALL_NAMESPACES else namespace
    return f"{user}.{role}.{where}"


def _binding_of(record: Record) -> Binding:
    spec = record.spec
    return Binding(
        subject=str(spec["user"]), role=Role(spec["role"]), namespace=str(spec["namespace"])
    )


def bind(app: App, user: str, role: Role | str, namespace: str) -> tuple[Binding, bool]:
    """Give ``user`` ``role`` in ``namespace``: (the binding, whether it is new)."""
    binding = Binding(check_user(user), check_role(str(role)), check_namespace(namespace))
    spec = {"user": binding.subject, "role": str(binding.role), "namespace": binding.namespace}
    name = binding_record_name(binding.subject, binding.role, binding.namespace)
    try:
        app.store.create(KIND_ROLE_BINDING, CLUSTER_NAMESPACE, name, spec)
    except AlreadyExistsError:
        return binding, False
    _forget_cached(app)
    return binding, True


def unbind(app: App, user: str, role: Role | str, namespace: str) -> Binding:
    binding = Binding(check_user(user), check_role(str(role)), check_namespace(namespace))
    name = binding_record_name(binding.subject, binding.role, binding.namespace)
    record = app.store.get(KIND_ROLE_BINDING, CLUSTER_NAMESPACE, name)
    if record is None:
        raise NotFoundError(
            f"role binding {name} not found: user {user} has no role {role} in "
            f"{'every namespace' if namespace == ALL_NAMESPACES else 'namespace ' + namespace}"
        )
    app.store.delete(record)
    _forget_cached(app)
    return binding


def list_bindings(app: App, user: str | None = None, namespace: str | None = None) -> list[Binding]:
    """Bindings, optionally of one user and/or bound in one namespace (``*`` is
    a namespace of its own here: filtering on ``team-a`` does not list ``*``)."""
    found = [_binding_of(r) for r in app.store.list(KIND_ROLE_BINDING, CLUSTER_NAMESPACE)]
    return [
        b
        for b in found
        if (user is None or b.subject == user) and (namespace is None or b.namespace == namespace)
    ]


def _bindings_by_user(app: App) -> dict[str, tuple[Binding, ...]]:
    grouped: dict[str, list[Binding]] = {}
    for binding in list_bindings(app):
        grouped.setdefault(binding.subject, []).append(binding)
    return {user: tuple(found) for user, found in grouped.items()}


# --- tokens --------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: everything but its hash."""

    id: str
    name: str
    user: str
    created_at: float
    expires_at: float | None
    revoked: bool
    bindings: tuple[Binding, ...] = ()

    def expired(self, now: float | None = None) -> bool:
        return tokens.is_expired(self.expires_at, time.time() if now is None else now)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "user": self.user,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "revoked": self.revoked,
            "expired": self.expired(),
            "bindings": [{"role": str(b.role), "namespace": b.namespace} for b in self.bindings],
        }


def _token_info(record: Record, bindings: tuple[Binding, ...] = ()) -> TokenInfo:
    spec = record.spec
    expires = spec.get("expiresAt")
    return TokenInfo(
        id=record.name,
        name=str(spec["name"]),
        user=str(spec["user"]),
        created_at=float(spec["createdAt"]),
        expires_at=None if expires is None else float(expires),
        revoked=bool(spec.get("revoked", False)),
        bindings=bindings,
    )


def create_token(
    app: App,
    user: str,
    name: str | None = None,
    ttl_seconds: float | None = None,
    bindings: Iterable[tuple[Role | str, str]] = (),
) -> tuple[str, TokenInfo]:
    """A new token for ``user``, after binding the user to each (role, namespace)
    given (existing bindings are kept). Returns the token string, which is
    shown this once and never stored, and its record."""
    check_user(user)
    token_name = check_token_name(name if name is not None else user)
    if ttl_seconds is not None and ttl_seconds <= 0:
        raise InputError(f"ttl {ttl_seconds}: expected a positive number of seconds")
    wanted = [
        (check_role(str(role)), check_namespace(namespace)) for role, namespace in bindings
    ]  # validate all before writing any
    for role, namespace in wanted:
        bind(app, user, role, namespace)
    now = time.time()
    while True:
        token, parts = tokens.generate()
        spec = {
            "user": user,
            "name": token_name,
            "createdAt": now,
            "expiresAt": None if ttl_seconds is None else now + ttl_seconds,
            "revoked": False,
            "hash": tokens.hash_secret(parts.secret),
        }
        try:
            record = app.store.create(KIND_TOKEN, CLUSTER_NAMESPACE, parts.token_id, spec)
        except AlreadyExistsError:
            continue  # a 32-bit id collided: draw another
        return token, _token_info(record, tuple(list_bindings(app, user=user)))


def _token_record(app: App, token_id: str) -> Record:
    record = app.store.get(KIND_TOKEN, CLUSTER_NAMESPACE, token_id)
    if record is None:
        raise NotFoundError(f"token {token_id} not found (see 'portway token ls')")
    return record


def revoke_token(app: App, token_id: str) -> TokenInfo:
    """Mark a token revoked (kept for the audit trail); revoking twice is fine."""
    record = _token_record(app, token_id)
    if not record.spec.get("revoked"):
        record = app.store.update_spec(
            record, {**record.spec, "revoked": True, "revokedAt": time.time()}
        )
    _forget_cached(app)
    return _token_info(record, tuple(list_bindings(app, user=str(record.spec["user"]))))


def list_tokens(app: App, user: str | None = None) -> list[TokenInfo]:
    by_user = _bindings_by_user(app)
    infos = [
        _token_info(r, by_user.get(str(r.spec["user"]), ()))
        for r in app.store.list(KIND_TOKEN, CLUSTER_NAMESPACE)
    ]
    infos = [t for t in infos if user is None or t.user == user]
    return sorted(infos, key=lambda t: (t.created_at, t.id))


def get_token(app: App, token_id: str) -> TokenInfo:
    record = _token_record(app, token_id)
    return _token_info(record, tuple(list_bindings(app, user=str(record.spec["user"]))))


# --- authentication ------------------------------------------------------


@dataclass
class _AuthCache:
    lock: threading.Lock
    #: sha256 of the whole token -> (principal, monotonic time it stops being valid)
    entries: dict[str, tuple[Principal, float]]


_caches: weakref.WeakKeyDictionary[App, _AuthCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_of(app: App) -> _AuthCache:
    with _caches_lock:
        cache = _caches.get(app)
        if cache is None:
            cache = _caches[app] = _AuthCache(threading.Lock(), {})
        return cache


def _forget_cached(app: App) -> None:
    """Changes made in this process take effect at once, not after the cache time."""
    cache = _cache_of(app)
    with cache.lock:
        cache.entries.clear()


def authenticate(app: App, authorization: str | None) -> Principal:
    """The principal behind an ``Authorization: Bearer pw_…`` header value, or
    ``UnauthenticatedError``. A success is reused for at most
    ``AUTH_CACHE_SECONDS`` (never past the token's expiry)."""
    parts = tokens.parse_authorization(authorization)
    key = tokens.hash_secret(f"{parts.token_id}_{parts.secret}")
    cache = _cache_of(app)
    now = time.monotonic()
    with cache.lock:
        hit = cache.entries.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    principal, expires_at = _verify(app, parts)
    valid_until = now + AUTH_CACHE_SECONDS
    if expires_at is not None:
        valid_until = min(valid_until, now + (expires_at - time.time()))
    with cache.lock:
        if len(cache.entries) >= _AUTH_CACHE_MAX:
            cache.entries.clear()
        cache.entries[key] = (principal, valid_until)
    return principal


def _verify(app: App, parts: tokens.TokenParts) -> tuple[Principal, float | None]:
    record = app.store.get(KIND_TOKEN, CLUSTER_NAMESPACE, parts.token_id)
    # unknown id and wrong secret look the same to the caller
    if record is None or not tokens.secret_matches(parts.secret, str(record.spec.get("hash", ""))):
        raise UnauthenticatedError(tokens.INVALID)
    info = _token_info(record)
    # the caller holds the secret: saying why it no longer works gives nothing away
    if info.revoked:
        raise UnauthenticatedError(f"token {info.id} ({info.name}) was revoked")
    if info.expired():
        raise UnauthenticatedError(f"token {info.id} ({info.name}) has expired")
    bindings = tuple(list_bindings(app, user=info.user))
    return Principal(info.user, info.id, info.name, bindings), info.expires_at


# --- bootstrap -----------------------------------------------------------


def bootstrap_admin(app: App, home: Path) -> Path | None:
    """On a store with no tokens, create a cluster-admin token for user
    ``admin`` and write it to ``home/admin.token`` (mode 0600). Returns the
    file, or ``None`` when the store already had tokens (or another server
    bootstrapped it first)."""
    if app.store.list(KIND_TOKEN, CLUSTER_NAMESPACE):
        return None
    try:  # one winner when several servers start on one store
        app.store.create(KIND_CLUSTER, CLUSTER_NAMESPACE, _BOOTSTRAP_MARKER, {"at": time.time()})
    except AlreadyExistsError:
        return None
    token, _ = create_token(
        app, BOOTSTRAP_USER, BOOTSTRAP_TOKEN_NAME, None, [(Role.ADMIN, ALL_NAMESPACES)]
    )
    path = home / ADMIN_TOKEN_FILE
    write_secret_file(path, token)
    return path


def write_secret_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` readable by its owner only (0600), also
    when the file already existed with wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with contextlib.closing(os.fdopen(fd, "w")) as handle:
        os.fchmod(fd, 0o600)
        handle.write(content + "\n")


def bindings_json(bindings: Iterable[Binding]) -> list[Mapping[str, str]]:
    return [{"user": b.subject, "role": str(b.role), "namespace": b.namespace} for b in bindings]
