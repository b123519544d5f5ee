"""Kernel modules of a Debian kernel package: what each needs, and an order to load them.

Debian builds most drivers as modules, and the ``.deb`` ships no
``modules.dep`` (``depmod`` runs at install time). Each module's own ELF
section ``.modinfo`` says what it needs: ``depends=`` (modules whose symbols
it uses) and ``softdep=pre: ...`` (modules it asks for by name at run time,
e.g. a crypto algorithm). This module reads that section without
``objcopy`` and orders a set of modules so that each comes after what it
needs, which is what ``insmod`` in an initramfs without ``modprobe`` needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path


class ModuleError(RuntimeError):
    """A module is missing from the kernel package or its ELF file is unreadable."""


def norm(name: str) -> str:
    """Module names treat ``-`` and ``_`` alike (``crc-t10dif`` is ``crc_t10dif``)."""
    return name.replace("-", "_")


def modinfo(data: bytes) -> dict[str, list[str]]:
    """The ``key=value`` strings of the ``.modinfo`` section of an ELF64 little-endian module."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ModuleError("not an ELF64 little-endian file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name_off, off, size = section(i)
        end = data.index(b"\0", stroff + name_off)
        if data[stroff + name_off:end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in data[off:off + size].split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
            return info
    return {}


@dataclass
class Module:
    name: str
    path: Path
    depends: list[str] = field(default_factory=list)
    softdeps: list[str] = field(default_factory=list)


def index(modules_dir: Path) -> dict[str, Module]:
    """Every ``.ko`` under ``modules_dir`` (``lib/modules/<release>``), by normalised name.

    Only the dependency lists are parsed here, from each file's ``.modinfo``.
    """
    found: dict[str, Module] = {}
    for path in sorted(modules_dir.rglob("*.ko")):
        info = modinfo(path.read_bytes())
        deps = [norm(d) for v in info.get("depends", []) for d in v.split(",") if d]
        soft = [norm(w) for v in info.get("softdep", []) for w in v.split()
                if not w.endswith(":")]
        found[norm(path.stem)] = Module(norm(path.stem), path, deps, soft)
    return found


def load_order(wanted: list[str], available: dict[str, Module]) -> list[Module]:
    """``wanted`` and everything they depend on, each after its dependencies.

    Soft dependencies are followed when a module of that name exists (``crc64``);
    soft dependencies on an alias (a crypto algorithm such as ``crct10dif``)
    must be listed in ``wanted`` by the caller, before the module that needs them.
    """
    order: list[Module] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...], required: bool) -> None:
        name = norm(name)
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ModuleError(f"dependency cycle: {' -> '.join(chain + (name,))}")
        mod = available.get(name)
        if mod is None:
            if required:
                via = f" (needed by {chain[-1]})" if chain else ""
                raise ModuleError(f"module {name!r}{via} is not in the kernel package")
            return
        state[name] = "visiting"
        for dep in mod.depends:
            visit(dep, chain + (name,), True)
        for dep in mod.softdeps:
            visit(dep, chain + (name,), False)
        state[name] = "done"
        order.append(mod)

    for name in wanted:
        visit(name, (), True)
    return order


#: The trailer ``sign-file`` appends to a signed module: ``struct module_signature`` (12 bytes, the
#: signature's length big-endian in its last 4), then this magic; the PKCS#7 signature comes before both.
SIGNATURE_MAGIC = b"~Module signature appended~\n"


def strip_signature(data: bytes) -> bytes:
    """The module without its appended signature (unchanged if it has none)."""
    if not data.endswith(SIGNATURE_MAGIC):
        return data
    info_end = len(data) - len(SIGNATURE_MAGIC)
    sig_len = int.from_bytes(data[info_end - 4:info_end], "big")
    start = info_end - 12 - sig_len
    if start < 0:
        raise ModuleError(f"the module's signature trailer says {sig_len} bytes, more than the file holds")
    return data[:start]
