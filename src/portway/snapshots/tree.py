"""Whether a directory tree changed since an earlier moment, from its
metadata alone (no file is read): what lets a migration skip the stopped
snapshot of a volume nothing wrote to since the pre-copy.

The proof rests on the inode change time (ctime), which every change of a
file's data or metadata sets and no user can set back (unlike mtime):

* any write, truncate, chmod, chown, link or rename after the first listing
  sets the ctime of the inode it touches (a new or removed entry also sets
  its directory's), so a second listing differs from the first;
* but the kernel stamps ctime from a coarse clock (one tick, 1-10 ms), so
  a change made in the same tick as an entry's previous change may leave
  its ctime as it was. An entry changed within ``RACY_NS`` before the first
  listing is therefore *racy*: the listing cannot prove it unchanged later,
  and the caller must compare contents (git's "racily clean" rule);
* writes through a shared memory mapping set ctime only when they fault on
  a clean page; ``settle`` writes dirty pages back first, which makes every
  page clean (write-protected), so a later mapped write faults and stamps.
  That holds for disk file systems with write-back (``LISTABLE``); tmpfs,
  for one, never stamps a mapped write, so ``listable`` refuses it and any
  file system it does not know.

Other writers are the caller's to exclude (a migration checks that no
running container mounts the volume).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

#: an entry changed less than this before a listing is racy (a coarse clock
#: tick is 1-10 ms; the margin leaves room for the listing's own duration)
RACY_NS = 100_000_000


#: file systems whose ctime the rules above hold for (local disks with
#: write-back and page_mkwrite timestamps); others are compared by content
LISTABLE = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs"})
_MOUNTS = Path("/proc/self/mounts")


@dataclass(frozen=True)
class TreeState:
    #: over every entry's path, type, mode, owner, size, mtime, ctime, inode,
    #: link count and symlink target
    digest: str
    files: int  # regular files
    bytes: int  # their sizes, summed
    #: an entry changed within ``RACY_NS`` of the listing (see module doc)
    racy: bool


def filesystem_of(root: Path) -> str:
    """The type of the file system ``root`` is on ("" if unknown)."""
    target = os.path.realpath(root)
    best, kind = "", ""
    try:
        lines = _MOUNTS.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and the like as octal (\040)
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def listable(root: Path) -> bool:
    """Whether a listing of ``root`` can prove it unchanged (see module doc)."""
    return filesystem_of(root) in LISTABLE


def settle(root: Path) -> None:
    """Write the dirty pages of ``root``'s file system back (syncfs), so a
    write through a mapping made after this stamps the file's ctime."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) == 0:
            return
    except (AttributeError, OSError):
        pass  # no syncfs here: sync everything instead
    finally:
        os.close(fd)
    os.sync()


def tree_state(root: Path) -> TreeState:
    """One listing of ``root`` (its own entry included), in path order;
    raises ``OSError`` if it cannot be read."""
    began = time.time_ns()
    lines: list[str] = []
    files = size = 0
    racy = False
    for path, info in _walk(root):
        if stat.S_ISREG(info.st_mode):
            files += 1
            size += info.st_size
        link = str(Path(path).readlink()) if stat.S_ISLNK(info.st_mode) else ""
        relative = os.path.relpath(path, root)
        lines.append(
            f"{relative}\0{info.st_mode}\0{info.st_uid}\0{info.st_gid}\0{info.st_size}\0"
            f"{info.st_mtime_ns}\0{info.st_ctime_ns}\0{info.st_ino}\0{info.st_nlink}\0{link}"
        )
        racy = racy or max(info.st_ctime_ns, info.st_mtime_ns) >= began - RACY_NS
    digest = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
    return TreeState(digest, files, size, racy)


def _walk(root: Path) -> list[tuple[str, os.stat_result]]:
    found = [(str(root), os.lstat(root))]
    pending = [str(root)]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                info = entry.stat(follow_symlinks=False)
                found.append((entry.path, info))
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
    found.sort(key=lambda item: item[0])
    return found
