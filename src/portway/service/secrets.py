"""Secrets: create, update, list and delete; checks for ``apply``; and the
template hash that makes a changed value roll the replicas using it.

Values enter here as bytes and leave only sealed (portway.secrets). Nothing
this module returns or raises carries a value: ``SecretInfo`` has names,
keys, sizes and a version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from portway.controller.records import (
    KIND_SECRET,
    KIND_WORKLOAD,
    template_generation_of,
    template_hash_of,
    workload_of,
)
from portway.errors import AlreadyExistsError, ConflictError, InputError, Issue, NotFoundError
from portway.secrets import SecretInfo, SecretKey, info_of, load_or_create_key, seal_values
from portway.secrets.stored import check_name, fingerprint_of, keys_of
from portway.service.app import App
from portway.spec.model import Workload, WorkloadSpec
from portway.store import Record

_RETRIES = 5


def secret_key(app: App) -> SecretKey:
    return load_or_create_key(app.settings.resolved_secret_key_file())


def _info(record: Record) -> SecretInfo:
    return info_of(record.namespace, record.name, record.spec, record.created_at, record.updated_at)


def create(app: App, namespace: str, name: str, data: Mapping[str, bytes]) -> SecretInfo:
    """A new secret; AlreadyExistsError if the name is taken (as kubectl create)."""
    check_name(name)
    spec = seal_values(secret_key(app), namespace, name, data)
    try:
        record = app.store.create(KIND_SECRET, namespace, name, spec)
    except AlreadyExistsError:
        raise AlreadyExistsError(
            f"secret {namespace}/{name} already exists: to change its values, use "
            "--update; or remove it first"
        ) from None
    roll_workloads_using(app, namespace, name)
    return _info(record)


def create_or_update(app: App, namespace: str, name: str, data: Mapping[str, bytes]) -> SecretInfo:
    """Create the secret or replace all its values (keys not given are
    dropped, as with ``kubectl apply`` of a whole Secret). Workloads using it
    roll when a value changed."""
    check_name(name)
    key = secret_key(app)
    for _ in range(_RETRIES):
        existing = app.store.get(KIND_SECRET, namespace, name)
        try:
            if existing is None:
                record = app.store.create(
                    KIND_SECRET, namespace, name, seal_values(key, namespace, name, data)
                )
            else:
                spec = seal_values(key, namespace, name, data, existing.spec)
                if spec["fingerprint"] == fingerprint_of(existing.spec) and spec[
                    "data"
                ].keys() == keys_of(existing.spec):
                    return _info(existing)  # same values: nothing to write, nothing rolls
                record = app.store.update_spec(existing, spec)
        except (ConflictError, AlreadyExistsError):
            continue
        roll_workloads_using(app, namespace, name)
        return _info(record)
    raise ConflictError(f"secret {namespace}/{name} keeps changing under us; try again")


def list_secrets(app: App, namespace: str | None) -> list[SecretInfo]:
    """Names, keys, sizes and versions (``None``: every namespace)."""
    return [_info(r) for r in app.store.list(KIND_SECRET, namespace)]


def get_info(app: App, namespace: str, name: str) -> SecretInfo:
    return _info(_require(app, namespace, name))


def _require(app: App, namespace: str, name: str) -> Record:
    record = app.store.get(KIND_SECRET, namespace, name)
    if record is None:
        raise NotFoundError(f"secret {namespace}/{name} not found")
    return record


def users_of(app: App, namespace: str, name: str) -> list[str]:
    """Workloads (not being deleted) of ``namespace`` that reference the secret."""
    found = []
    for record in app.store.list(KIND_WORKLOAD, namespace):
        if record.deleting:
            continue
        if any(ref.secret == name for ref in workload_of(record).spec.secrets):
            found.append(record.key)
    return found


def delete(app: App, namespace: str, name: str) -> SecretInfo:
    """Remove the secret; refused while a workload uses it (its next replica
    could not be created), naming those workloads."""
    record = _require(app, namespace, name)
    users = users_of(app, namespace, name)
    if users:
        raise InputError(
            f"secret {namespace}/{name} is used by workload(s) {', '.join(users)}; "
            "delete them or remove the reference from their spec first"
        )
    app.store.delete(record)
    return _info(record)


# --- apply ----------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Where a workload's spec names secrets, for messages."""

    spec: WorkloadSpec
    namespace: str
    file: str
    document: int
    lines: Mapping[str, int]


def reference_issues(app: App, ref: Reference) -> list[Issue]:
    """A reference to a secret or key that does not exist: refused at apply
    time (Kubernetes would only fail the pod later)."""
    issues: list[Issue] = []
    records: dict[str, Record | None] = {}
    for i, item in enumerate(ref.spec.secrets):
        if item.secret not in records:
            records[item.secret] = app.store.get(KIND_SECRET, ref.namespace, item.secret)
        record = records[item.secret]
        if record is None:
            path = f"spec.secrets[{i}].secret"
            issues.append(
                Issue(
                    f"secret {item.secret!r} does not exist in namespace {ref.namespace!r}",
                    file=ref.file,
                    document=ref.document,
                    path=path,
                    line=ref.lines.get(path),
                    hint=f"create it first: portway secret create {item.secret} "
                    f"-n {ref.namespace} --from-file {item.key}=FILE",
                )
            )
        elif item.key not in keys_of(record.spec):
            path = f"spec.secrets[{i}].key"
            have = ", ".join(sorted(keys_of(record.spec)))
            issues.append(
                Issue(
                    f"secret {ref.namespace}/{item.secret} has no key {item.key!r} "
                    f"(it has: {have})",
                    file=ref.file,
                    document=ref.document,
                    path=path,
                    line=ref.lines.get(path),
                )
            )
    return issues


def template_hash(app: App, workload: Workload) -> str:
    """The spec's template hash, plus the keyed fingerprint of every secret
    it uses, so that a changed value rolls the replicas (as a changed spec
    does). Only keyed digests enter it: the hash is a container label."""
    base = workload.spec.template_hash()
    names = sorted({ref.secret for ref in workload.spec.secrets})
    if not names:
        return base
    namespace = workload.metadata.namespace
    digest = hashlib.sha256(base.encode())
    for name in names:
        record = app.store.get(KIND_SECRET, namespace, name)
        fingerprint = fingerprint_of(record.spec) if record is not None else "missing"
        digest.update(f"\0{name}\0{fingerprint}".encode())
    return digest.hexdigest()[:16]


def roll_workloads_using(app: App, namespace: str, name: str) -> list[str]:
    """Give each workload that uses the secret its new template hash (and a
    new template generation), so the controller replaces its replicas one
    at a time. Returns the workloads rolled."""
    rolled = []
    for key in users_of(app, namespace, name):
        for _ in range(_RETRIES):
            record = app.store.get(KIND_WORKLOAD, namespace, key.split("/", 1)[1])
            if record is None or record.deleting:
                break
            new_hash = template_hash(app, workload_of(record))
            if new_hash == template_hash_of(record):
                break
            spec = {
                **record.spec,
                "templateHash": new_hash,
                "templateGeneration": template_generation_of(record) + 1,
            }
            try:
                app.store.update_spec(record, spec)
            except ConflictError:
                continue
            rolled.append(key)
            break
    return rolled
