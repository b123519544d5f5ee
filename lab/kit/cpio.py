"""A ``newc`` cpio archive (what the Linux kernel unpacks as an initramfs), in pure Python.

The host may have no ``cpio`` program; the format is simple: every entry is a
110-byte ASCII header (``070701`` and thirteen 8-digit hex fields), the NUL
terminated name padded to 4 bytes, the data padded to 4 bytes, and the
archive ends with an entry named ``TRAILER!!!``. See the kernel's
``Documentation/driver-api/early-userspace/buffer-format.rst``.
"""

from __future__ import annotations

import gzip
import io
import stat
from dataclasses import dataclass

MAGIC = b"070701"


@dataclass(frozen=True)
class Entry:
    """One file, directory, symlink or device node of the archive."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int) -> Entry:
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, entry: Entry, name: bytes) -> bytes:
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
    return MAGIC + b"".join(b"%08X" % f for f in fields)


def pack(entries: list[Entry]) -> bytes:
    """The uncompressed archive; parent directories must come before their contents."""
    out = io.BytesIO()
    names = set()
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        if entry.name in names:
            raise ValueError(f"{entry.name!r} is twice in the archive")
        names.add(entry.name)
        name = entry.name.encode() + b"\0"
        head = _header(ino, entry, name) + name
        out.write(head + _pad(len(head)))
        out.write(entry.data + _pad(len(entry.data)))
    return out.getvalue()


def pack_gzip(entries: list[Entry]) -> bytes:
    """The archive compressed with gzip (every Debian kernel unpacks it); mtime 0 for reproducibility."""
    return gzip.compress(pack(entries), compresslevel=9, mtime=0)


def unpack(data: bytes) -> list[Entry]:
    """Read an uncompressed newc archive back (for tests and inspection)."""
    entries: list[Entry] = []
    pos = 0
    while True:
        if data[pos:pos + 6] != MAGIC:
            raise ValueError(f"offset {pos}: not a newc header")
        f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        start = pos + 110
        name = data[start:start + namesize - 1].decode()
        start += namesize + (-(110 + namesize) % 4)
        body = data[start:start + filesize]
        pos = start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return entries
        entries.append(Entry(name, f[1], body, (f[9], f[10])))
