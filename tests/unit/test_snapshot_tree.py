"""``snapshots.tree``: a metadata listing proves a directory unchanged, and
every kind of change after it (even one that keeps size and content, or
writes through a memory mapping) makes the next listing differ."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from portway.snapshots.tree import RACY_NS, filesystem_of, listable, settle, tree_state


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    if not listable(tmp_path):
        pytest.skip(f"{tmp_path} is on {filesystem_of(tmp_path)!r}, not a disk file system")
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "blob").write_bytes(b"x" * 8192)
    (root / "sub" / "list").write_text("one\n")
    (root / "link").symlink_to("sub/list")
    return root


def _aged(root: Path, age_ns: int = 30_000_000) -> None:
    """Until the newest change under ``root`` is ``age_ns`` old (default: a
    few clock ticks, so a change after it cannot share its coarse timestamp)."""
    newest = max(
        max(p.lstat().st_ctime_ns, p.lstat().st_mtime_ns) for p in [root, *root.rglob("*")]
    )
    while time.time_ns() - newest < age_ns:
        time.sleep(0.005)


def _rewrite_same(root: Path) -> None:
    (root / "blob").write_bytes(b"x" * 8192)  # same size, same bytes


def _append(root: Path) -> None:
    with (root / "sub" / "list").open("a") as f:
        f.write("two\n")


def _add(root: Path) -> None:
    (root / "sub" / "new").write_text("")


def _remove(root: Path) -> None:
    (root / "sub" / "list").unlink()


def _chmod(root: Path) -> None:
    (root / "blob").chmod(0o600)


def _relink(root: Path) -> None:
    (root / "link").unlink()
    (root / "link").symlink_to("blob")


def _touch_back(root: Path) -> None:
    """A write that puts mtime back: ctime still moves."""
    before = (root / "blob").stat()
    (root / "blob").write_bytes(b"y" * 8192)
    os.utime(root / "blob", ns=(before.st_atime_ns, before.st_mtime_ns))


def test_an_untouched_tree_lists_the_same(volume: Path) -> None:
    _aged(volume, RACY_NS + 10_000_000)
    first = tree_state(volume)
    (volume / "blob").read_bytes()  # reading changes nothing that counts
    assert tree_state(volume) == first
    assert not first.racy
    assert (first.files, first.bytes) == (2, 8192 + 4)


@pytest.mark.parametrize(
    "change", [_rewrite_same, _append, _add, _remove, _chmod, _relink, _touch_back]
)
def test_every_change_after_a_listing_shows(volume: Path, change: Callable[[Path], None]) -> None:
    _aged(volume)
    first = tree_state(volume)
    change(volume)
    assert tree_state(volume).digest != first.digest


def test_a_write_through_a_mapping_after_settle_shows(volume: Path) -> None:
    with (volume / "blob").open("r+b") as f, mmap.mmap(f.fileno(), 0) as mapped:
        mapped[0:1] = b"a"  # dirty before the listing, as a database's pages may be
        _aged(volume)
        settle(volume)
        first = tree_state(volume)
        mapped[1:2] = b"b"  # the page is clean again: this write faults and stamps
        mapped.flush()
    assert tree_state(volume).digest != first.digest


def test_a_fresh_change_is_racy(volume: Path) -> None:
    (volume / "sub" / "list").write_text("changed\n")
    assert tree_state(volume).racy
    assert RACY_NS >= 10_000_000  # at least a coarse clock tick


def test_only_disk_file_systems_are_listable(tmp_path: Path) -> None:
    assert filesystem_of(Path("/proc")) == "proc"
    assert not listable(Path("/proc"))
    if Path("/dev/shm").is_dir():
        assert not listable(Path("/dev/shm"))  # tmpfs never stamps mapped writes
