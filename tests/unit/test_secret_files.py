"""Secret files on the host: written on tmpfs with the asked mode and owner,
removed with their replica, swept when their container is gone; and the CLI's
reading of --from-file/--from-literal."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from portway.cli.secrets import read_sources
from portway.drivers import secret_files
from portway.drivers.secret_files import SecretFile, filesystem_type, numeric_owner
from portway.errors import InputError

SHM = Path("/dev/shm")
T1 = secret_files.Scope("fake", "t1")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if filesystem_type(SHM) != "tmpfs":
        pytest.fail("/dev/shm is not a tmpfs on this host; these tests need one")
    base = SHM / f"portway-test-{tmp_path.name}"
    monkeypatch.setenv("PORTWAY_SECRETS_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_files_are_written_with_mode_and_owner_and_removed(root: Path) -> None:
    files = (
        SecretFile("/run/secrets/db", b"one", 0o400),
        SecretFile("/etc/app/token", b"two", 0o440, uid=1000, gid=2000),
    )
    mounts = secret_files.materialize(T1, "pw-ns-w-0-g1", files)
    assert [m.mount_path for m in mounts] == ["/run/secrets/db", "/etc/app/token"]
    first, second = (Path(m.host_path) for m in mounts)
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert stat.S_IMODE(first.stat().st_mode) == 0o400
    assert (second.stat().st_uid, second.stat().st_gid) == (1000, 2000)
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert filesystem_type(first) == "tmpfs"
    # a repeated create rewrites (idempotent), it does not fail on the old file
    again = secret_files.materialize(T1, "pw-ns-w-0-g1", files[:1])
    assert Path(again[0].host_path).read_bytes() == b"one"
    secret_files.remove(T1, "pw-ns-w-0-g1")
    assert not first.parent.exists()


def test_sweep_spares_live_and_young_directories(root: Path) -> None:
    for name in ("live", "gone", "young"):
        secret_files.materialize(T1, name, (SecretFile("/s", b"x"),))
    old = 1_000_000.0
    for name in ("live", "gone"):
        os.utime(root / "fake.t1" / name, (old, old))
    removed = secret_files.sweep(T1, {"live"}, now=old + secret_files.SWEEP_GRACE_SECONDS + 1)
    assert removed == ["gone"]
    assert sorted(p.name for p in (root / "fake.t1").iterdir()) == ["live", "young"]


def test_unsafe_names_are_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        secret_files.materialize(T1, "../x", (SecretFile("/s", b"x"),))


@pytest.mark.parametrize(
    ("user", "owner"),
    [(None, (None, None)), ("1000", (1000, None)), ("1000:2", (1000, 2)), ("app", (None, None))],
)
def test_numeric_owner(user: str | None, owner: tuple[int | None, int | None]) -> None:
    assert numeric_owner(user) == owner


def test_cli_sources(tmp_path: Path) -> None:
    (tmp_path / "password.txt").write_bytes(b"p\n")
    data = read_sources(
        [str(tmp_path / "password.txt"), f"cert={tmp_path / 'password.txt'}"], ["user=app"]
    )
    assert data == {"password.txt": b"p\n", "cert": b"p\n", "user": b"app"}
    with pytest.raises(InputError) as refused:
        read_sources([str(tmp_path / "absent")], ["novalue-hunter2"])
    assert refused.value.exit_code == 2
    text = str(refused.value)
    assert str(tmp_path / "absent") in text and "--from-literal" in text
    assert "hunter2" not in text  # a malformed literal may be the value itself


def test_only_engines_on_this_host_claim_secret_files() -> None:
    from portway.capabilities.vocabulary import Feature
    from portway.drivers.docker import DockerDriver

    remote = DockerDriver("remote", "docker+tcp://127.0.0.1:9")  # nothing listens: no handlers
    try:
        assert Feature.SECRETS_FILES not in remote.capabilities().features
    finally:
        remote.close()
    local = DockerDriver("local", "docker:///nonexistent.sock")
    try:
        assert Feature.SECRETS_FILES in local.capabilities().features
    finally:
        local.close()
