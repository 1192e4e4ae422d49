"""Sealing secret values: round trip, tamper and move detection, wrong keys,
and the key file (mode 0600, one key even when processes race to make it)."""

from __future__ import annotations

import base64
import multiprocessing
import stat
from pathlib import Path

import pytest

from portway.errors import InputError
from portway.secrets import SecretUnreadableError, load_or_create_key, open_values, seal_values
from portway.secrets.keyfile import load_key


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "secret.key"


def test_round_trip_and_a_fresh_nonce_per_value(key_path: Path) -> None:
    key = load_or_create_key(key_path)
    first = key.seal("team-a", "db", "password", b"hunter2")
    second = key.seal("team-a", "db", "password", b"hunter2")
    assert first != second  # a fresh nonce each time: equal values do not look equal
    assert key.open("team-a", "db", "password", first) == b"hunter2"
    assert key.open("team-a", "db", "password", second) == b"hunter2"
    assert b"hunter2" not in base64.b64decode(first)


def test_a_changed_ciphertext_is_refused_not_decrypted(key_path: Path) -> None:
    key = load_or_create_key(key_path)
    blob = bytearray(base64.b64decode(key.seal("team-a", "db", "password", b"hunter2")))
    blob[-1] ^= 1
    with pytest.raises(SecretUnreadableError, match="team-a/db"):
        key.open("team-a", "db", "password", base64.b64encode(bytes(blob)).decode())
    with pytest.raises(SecretUnreadableError):
        key.open("team-a", "db", "password", "not base64!")


@pytest.mark.parametrize(
    ("namespace", "name", "key_name"),
    [("team-b", "db", "password"), ("team-a", "other", "password"), ("team-a", "db", "user")],
)
def test_a_ciphertext_copied_to_another_secret_or_key_fails(
    key_path: Path, namespace: str, name: str, key_name: str
) -> None:
    key = load_or_create_key(key_path)
    sealed = key.seal("team-a", "db", "password", b"hunter2")
    with pytest.raises(SecretUnreadableError, match="cannot be decrypted with key file"):
        key.open(namespace, name, key_name, sealed)


def test_a_replaced_key_file_is_named_in_the_error(tmp_path: Path) -> None:
    old = load_or_create_key(tmp_path / "old.key")
    new = load_or_create_key(tmp_path / "new.key")
    spec = seal_values(old, "team-a", "db", {"password": b"hunter2"})
    with pytest.raises(SecretUnreadableError) as refused:
        open_values(new, "team-a", "db", spec)
    message = str(refused.value)
    assert "secret team-a/db cannot be decrypted with key file" in message
    assert str(tmp_path / "new.key") in message and "was the key replaced?" in message
    assert "hunter2" not in message
    # the same with the stored key id stripped: authentication still refuses it
    anonymous = {**spec, "keyId": new.id}
    with pytest.raises(SecretUnreadableError, match="was the key replaced"):
        open_values(new, "team-a", "db", anonymous)


def test_key_file_is_private_and_reused(key_path: Path) -> None:
    key = load_or_create_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert load_or_create_key(key_path).id == key.id
    assert "secret.key" in repr(key) and key_path.read_text() not in repr(key)
    assert list(key_path.parent.iterdir()) == [key_path]  # no temporary file left


def test_missing_or_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_key(tmp_path / "absent.key")
    damaged = tmp_path / "damaged.key"
    damaged.write_text("something else\n")
    with pytest.raises(InputError, match="not a portway secret key file"):
        load_or_create_key(damaged)


def _make_key(path: str, start: object, queue: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    queue.put(load_or_create_key(Path(path)).id)  # type: ignore[attr-defined]


def test_processes_racing_to_create_the_key_end_with_one_key(key_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(6)
    queue = context.Queue()
    workers = [
        context.Process(target=_make_key, args=(str(key_path), start, queue)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    ids = {queue.get(timeout=20) for _ in workers}
    for worker in workers:
        worker.join(timeout=20)
        assert worker.exitcode == 0
    assert len(ids) == 1
    assert ids == {load_key(key_path).id}


def test_fingerprint_is_keyed_and_tracks_values(tmp_path: Path) -> None:
    one = load_or_create_key(tmp_path / "one.key")
    two = load_or_create_key(tmp_path / "two.key")
    data = {"password": b"hunter2"}
    assert one.fingerprint("ns", "db", data) == one.fingerprint("ns", "db", dict(data))
    assert one.fingerprint("ns", "db", data) != one.fingerprint("ns", "db", {"password": b"x"})
    assert one.fingerprint("ns", "db", data) != two.fingerprint("ns", "db", data)


def test_revision_bumps_only_when_a_value_changes(key_path: Path) -> None:
    key = load_or_create_key(key_path)
    first = seal_values(key, "ns", "db", {"password": b"a"})
    same = seal_values(key, "ns", "db", {"password": b"a"}, first)
    changed = seal_values(key, "ns", "db", {"password": b"b"}, same)
    assert (first["revision"], same["revision"], changed["revision"]) == (1, 1, 2)
    assert open_values(key, "ns", "db", changed) == {"password": b"b"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "at least one key"),
        ({"a/b": b"x"}, "key 'a/b' is invalid"),
        ({"..": b"x"}, "key '..' is invalid"),
        ({"big": b"x" * (1024 * 1024 + 1)}, "the limit is 1048576"),
    ],
)
def test_bad_secret_data_is_refused(key_path: Path, data: dict[str, bytes], message: str) -> None:
    with pytest.raises(InputError, match=message):
        seal_values(load_or_create_key(key_path), "ns", "db", data)
