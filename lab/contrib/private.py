"""Text that could name a person or a machine: paths, user names, host names.

A contribution leaves its host for a public repository, so no cell of it may
hold a folder of the person's machine (``/home/ann/...``, ``~/x``,
``C:\\Users\\...``), a user name (``ann@laptop``, ``user=ann``) or the machine's
own name. :func:`find` looks for the patterns anyone can check, on any
machine; :func:`local_names` adds, on the recording machine itself, the
literal names of its users and of the host, which only that machine knows
(``python -m lab pack`` uses both, ``python -m lab add`` the patterns).

The kernel's own files (``/dev/kvm``, ``/proc/cpuinfo``, ``/sys/module/...``)
name no one and are allowed.
"""

from __future__ import annotations

import getpass
import os
import platform
import pwd
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

#: Absolute paths under these name the kernel's interfaces, the same on every machine.
KERNEL_PATHS = ("/dev/", "/proc/", "/sys/")

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("a path in a home folder", re.compile(r"(?<![\w])~[\w.-]*(?:/[\w.+~@*-]*)*")),
    ("a path", re.compile(r"(?<![\w:/.<>~\\-])/[\w.+~@-]+(?:/[\w.+~@*-]*)*")),
    ("a path", re.compile(r"\b[A-Za-z]:\\[^\s,;]*")),
    ("a path", re.compile(r"\bfile:/+[^\s,;]*")),
    ("a home folder", re.compile(r"\$HOME\b|\$\{HOME\}|%USERPROFILE%|%HOMEPATH%")),
    ("a user name", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")),
    ("a user name", re.compile(r"(?i)\b(?:user(?:name)?|login|owner|logname)\s*[=:]\s*[\w.-]+")),
    ("a user name", re.compile(r"\buid=\d+\(\w+\)")),
]

#: Names too common to identify anyone (every Linux machine has them; ``--root`` is an option).
_GENERIC = {"root", "nobody", "localhost", "localhost.localdomain", "localdomain", "user"}


@dataclass(frozen=True)
class Finding:
    """Text in a contribution that looks private: what it looks like, and the text itself."""

    what: str
    text: str


def find(text: str, names: Iterable[str] = ()) -> Finding | None:
    """The first piece of ``text`` that looks like a path, a user name or a host name, or None.

    ``names`` are literal names (this machine's users and host name) to look for as whole words.
    """
    for what, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            found = match.group(0)
            if what == "a path" and found.startswith(KERNEL_PATHS) and ".." not in found:
                continue
            return Finding(what, found)
    for name in names:
        if re.search(rf"(?i)(?<![\w.-]){re.escape(name)}(?![\w-])", text):
            return Finding("this machine's host or user name", name)
    return None


def local_names() -> list[str]:
    """The names of this machine and of the people on it, as they could appear in a recording.

    Host names (short and qualified) and the user names of the session and of every account
    with a person's uid (1000-59999, as Debian allots them); generic names (root, nobody, localhost) and names
    shorter than three letters are left out: they identify no one and match ordinary words.
    """
    names = {platform.node(), socket.gethostname()}
    try:
        names.add(socket.getfqdn())
    except OSError:
        pass
    names |= {n.split(".")[0] for n in names}
    for var in ("USER", "LOGNAME", "SUDO_USER"):
        names.add(os.environ.get(var, ""))
    try:
        names.add(getpass.getuser())
    except (KeyError, OSError):
        pass
    names |= {p.pw_name for p in pwd.getpwall() if 1000 <= p.pw_uid < 60000}  # Debian: 1000-59999 are people
    return sorted(n for n in names if len(n) >= 3 and n.lower() not in _GENERIC)
