"""A libvirt connection chosen by URI, and the domains, snapshots and volumes behind it.

One API, many hypervisors: the same calls drive libvirt's in-process test
driver (``test:///default``, no daemon: Binder, the static book build), QEMU/KVM
through the system daemon (``qemu:///system``), a per-user daemon
(``qemu:///session``) or another host (``qemu+ssh://host/system``). Which URI
is used:

1. the ``uri`` argument of :func:`connect`, else
2. the environment variable ``LAB_LIBVIRT_URI`` (:data:`lab.host.LIBVIRT_URI_ENV`), else
3. the first of ``prefer`` that answers (and, for a QEMU URI with
   ``require_kvm``, where ``/dev/kvm`` is usable), else
4. ``test:///default``.

:attr:`Connection.chosen_by` and :attr:`Connection.tried` say which rule
picked the URI and why the others did not answer: the book always shows them.

Every call into libvirt goes through :meth:`Connection.call`, which turns a
``libvirt.libvirtError`` into a :mod:`lab.virt.errors` exception with a clear
message. libvirt's default error printer (which writes every error to stderr,
and stderr fails a notebook cell in the book build) is silenced on import.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lab import host
from lab.virt.domain import ALLOWED_STATES, Domain, DomainInfo, cpu_seconds
from lab.virt.errors import DomainExists, StorageError, VirtError, _reset_module_cache, libvirt_module, translate
from lab.virt.spec import DomainSpec, check_name
from lab.virt.storage import Pool, Volume, pool_path

__all__ = [
    "ALLOWED_STATES", "BOOK_POOL", "DEFAULT_URI", "OPERATIONS", "URI_ENV", "Attempt", "Connection", "Domain",
    "DomainInfo", "Pool", "Volume", "_reset_module_cache", "connect", "format_version", "libvirt_module",
    "resolve_uri",
]

DEFAULT_URI = host.DEFAULT_LIBVIRT_URIS[0]  # "test:///default"
URI_ENV = host.LIBVIRT_URI_ENV

#: The book's operation -> (virsh command, libvirt C API). The data table
#: data/libvirt/api_mapping.csv says the same and a test keeps them in step.
OPERATIONS: dict[str, tuple[str, str]] = {
    "define": ("virsh define", "virDomainDefineXML"),
    "start": ("virsh start", "virDomainCreate"),
    "list": ("virsh list --all", "virConnectListAllDomains"),
    "dominfo": ("virsh dominfo", "virDomainGetInfo"),
    "dumpxml": ("virsh dumpxml", "virDomainGetXMLDesc"),
    "suspend": ("virsh suspend", "virDomainSuspend"),
    "resume": ("virsh resume", "virDomainResume"),
    "snapshot-create": ("virsh snapshot-create-as", "virDomainSnapshotCreateXML"),
    "snapshot-list": ("virsh snapshot-list", "virDomainListAllSnapshots"),
    "snapshot-revert": ("virsh snapshot-revert", "virDomainRevertToSnapshot"),
    "snapshot-delete": ("virsh snapshot-delete", "virDomainSnapshotDelete"),
    "shutdown": ("virsh shutdown", "virDomainShutdown"),
    "reboot": ("virsh reboot", "virDomainReboot"),
    "destroy": ("virsh destroy", "virDomainDestroy"),
    "undefine": ("virsh undefine", "virDomainUndefineFlags"),
    "volume-create": ("virsh vol-create-as", "virStorageVolCreateXML"),
    "volume-delete": ("virsh vol-delete", "virStorageVolDelete"),
}

#: Where a storage pool for the book's volumes lives, per kind of QEMU URI.
SYSTEM_IMAGE_DIR = "/var/lib/libvirt/images"
SESSION_IMAGE_DIR = "~/.local/share/libvirt/images"
#: Pools that already exist on common setups and may be reused.
WELL_KNOWN_POOLS = ("default", "default-pool")
BOOK_POOL = "lab-pool"

format_version = host.format_libvirt_version


# --------------------------------------------------------------------------- choosing a URI


@dataclass(frozen=True)
class Attempt:
    """One URI that was tried, and why it was not used (None: it was used)."""

    uri: str
    reason: str | None


def resolve_uri(uri: str | None = None) -> tuple[str | None, str]:
    """The URI set by argument or environment, and which of them set it.

    Returns ``(None, "default")`` when neither is set.
    """
    if uri:
        return uri, "argument"
    env = os.environ.get(URI_ENV, "").strip()
    if env:
        return env, f"environment variable {URI_ENV}"
    return None, "default"


def _open(uri: str, readonly: bool) -> Any:
    libvirt = libvirt_module()
    try:
        return libvirt.openReadOnly(uri) if readonly else libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise translate(exc, operation="connect", uri=uri) from exc


def connect(uri: str | None = None, *, prefer: Iterable[str] = (), require_kvm: bool = True,
            readonly: bool = False) -> Connection:
    """Open a libvirt connection; see the module docstring for how the URI is chosen.

    An explicit URI (argument or ``LAB_LIBVIRT_URI``) that does not answer is
    an error. A ``prefer`` URI that does not answer is skipped with its reason,
    and the connection falls back to ``test:///default``.
    """
    explicit, chosen_by = resolve_uri(uri)
    if explicit is not None:
        return Connection(_open(explicit, readonly), explicit, chosen_by, [Attempt(explicit, None)])
    tried: list[Attempt] = []
    for candidate in prefer:
        if candidate == DEFAULT_URI:
            break
        if require_kvm and candidate.startswith("qemu"):
            kvm = host.probe_kvm()
            if not kvm.usable:
                tried.append(Attempt(candidate,
                                     f"KVM is not usable here, so a type='kvm' domain cannot run: {kvm.reason}"))
                continue
        try:
            raw = _open(candidate, readonly)
        except VirtError as exc:
            tried.append(Attempt(candidate, str(exc)))
            continue
        tried.append(Attempt(candidate, None))
        return Connection(raw, candidate, "first preferred URI that answered", tried)
    tried.append(Attempt(DEFAULT_URI, None))
    why = "default: libvirt's in-process test driver, needs no daemon"
    if len(tried) > 1:
        why = "fallback: no preferred URI answered; " + why
    return Connection(_open(DEFAULT_URI, readonly), DEFAULT_URI, why, tried)


# --------------------------------------------------------------------------- connection


class Connection:
    """A libvirt connection plus the URI story: which URI, chosen how, what was tried."""

    def __init__(self, raw: Any, uri: str, chosen_by: str, tried: list[Attempt]) -> None:
        self.raw = raw
        self.requested_uri = uri
        self.chosen_by = chosen_by
        self.tried = tried
        self.uri = self.call("connect", raw.getURI)
        self.driver = self.call("connect", raw.getType)
        self.library_version = format_version(self.call("connect", raw.getLibVersion))
        try:
            self.hypervisor_version: str | None = format_version(raw.getVersion())
        except Exception:  # not every driver reports one
            self.hypervisor_version = None
        self.is_test = self.driver.upper() == "TEST"

    # -- plumbing ------------------------------------------------------------

    def call(self, operation: str, fn: Callable[..., Any], *args: Any, subject: str | None = None) -> Any:
        """Call ``fn(*args)``; a libvirt error becomes a clear :class:`VirtError`."""
        libvirt = libvirt_module()
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise translate(exc, operation=operation, uri=getattr(self, "uri", self.requested_uri),
                            subject=subject) from exc

    def close(self) -> None:
        if self.raw is not None:
            try:
                self.raw.close()
            finally:
                self.raw = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Connection {self.uri} driver={self.driver} chosen_by={self.chosen_by!r}>"

    def describe_rows(self) -> list[tuple[str, str]]:
        """Which URI answered and why: (item, value) rows; the book's table is lab.book.virt_tables.describe."""
        rows = [
            ("URI", self.uri),
            ("driver", self.driver),
            ("libvirt", self.library_version),
            ("hypervisor version", self.hypervisor_version or "-"),
            ("chosen by", self.chosen_by),
        ]
        for a in self.tried:
            if a.uri != self.requested_uri or a.reason:
                rows.append((f"tried {a.uri}", a.reason or "answered"))
        return rows

    # -- domains -------------------------------------------------------------

    def domains(self, which: str = "all", prefix: str | None = None) -> list[Domain]:
        """Domains: ``all`` (virsh list --all), ``running`` (virsh list) or ``inactive``."""
        libvirt = libvirt_module()
        flags = {
            "all": 0,
            "running": libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE,
            "inactive": libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE,
        }
        if which not in flags:
            raise ValueError(f"which must be one of {', '.join(flags)}, got {which!r}")
        raws = self.call("list", self.raw.listAllDomains, flags[which])
        doms = [Domain(self, r) for r in raws]
        if prefix is not None:
            doms = [d for d in doms if d.name.startswith(prefix)]
        return sorted(doms, key=lambda d: d.name)

    def domain_table(self, which: str = "all", prefix: str | None = None):
        """``virsh list`` as a DataFrame: Id, Name, State (and CPU time)."""
        import pandas as pd

        rows = []
        for d in self.domains(which, prefix):
            i = d.info()
            rows.append({"Id": i.id if i.id is not None else "-", "Name": i.name, "State": i.state,
                         "CPU time (s)": cpu_seconds(i.cpu_time_s)})
        return pd.DataFrame(rows, columns=["Id", "Name", "State", "CPU time (s)"])

    def lookup(self, name: str) -> Domain:
        check_name(name)
        return Domain(self, self.call("lookup", self.raw.lookupByName, name, subject=name))

    def exists(self, name: str) -> bool:
        libvirt = libvirt_module()
        try:
            self.raw.lookupByName(check_name(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise translate(exc, operation="lookup", uri=self.uri, subject=name) from exc
        return True

    def define(self, spec: DomainSpec) -> Domain:
        """``virsh define``: make the domain known (persistent, not running)."""
        if not isinstance(spec, DomainSpec):
            raise TypeError(f"define() takes a DomainSpec, got {type(spec).__name__}")
        if self.exists(spec.name):
            raise DomainExists(
                f"define {spec.name!r} failed on {self.uri}: a domain of that name is already defined -> "
                f"choose another name or undefine the old domain first (virsh undefine {spec.name})",
                uri=self.uri, operation="define")
        raw = self.call("define", self.raw.defineXML, spec.to_xml(), subject=spec.name)
        return Domain(self, raw)

    # -- storage -------------------------------------------------------------

    def pool(self, name: str | None = None, *, create: bool = True) -> Pool:
        """A usable storage pool: the named one, a well-known one, or a new transient one.

        Order: ``name`` if given; an active pool whose directory is this URI's
        image directory; an active ``default`` / ``default-pool``; else (if
        ``create``) a transient directory pool ``lab-pool`` in the image
        directory, which :meth:`Pool.release` destroys again. A URI without
        storage (or with no pool and ``create=False``) is a :class:`StorageError`.
        """
        libvirt = libvirt_module()
        if name is not None:
            raw = self.call("pool-lookup", self.raw.storagePoolLookupByName, check_name(name, "pool"), subject=name)
            if not raw.isActive():
                raise StorageError(f"storage pool {name!r} on {self.uri} is not active -> virsh pool-start {name}",
                                   uri=self.uri, operation="pool-lookup")
            return Pool(self, raw, owned=False)
        try:
            pools = self.raw.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        except libvirt.libvirtError as exc:
            raise translate(exc, operation="pool-list", uri=self.uri) from exc
        image_dir = self.image_dir()
        for p in pools:
            if image_dir and pool_path(p) == image_dir:
                return Pool(self, p, owned=False)
        for wanted in WELL_KNOWN_POOLS + (BOOK_POOL,):
            for p in pools:
                if p.name() == wanted:
                    return Pool(self, p, owned=False)
        if not create or image_dir is None:
            raise StorageError(
                f"no active storage pool on {self.uri} for the book's volumes -> "
                f"create one (virsh pool-create-as NAME dir --target DIR) and pass pool='NAME'",
                uri=self.uri, operation="pool-lookup")
        el = ET.Element("pool", type="dir")
        ET.SubElement(el, "name").text = BOOK_POOL
        ET.SubElement(ET.SubElement(el, "target"), "path").text = image_dir
        if not os.path.isdir(image_dir) and "://" in self.uri and self.uri.split("://", 1)[1].startswith("/"):
            os.makedirs(image_dir, exist_ok=True)  # local session URI: the user's own directory
        build = getattr(libvirt, "VIR_STORAGE_POOL_CREATE_WITH_BUILD", 0)
        raw = self.call("pool-create", self.raw.storagePoolCreateXML, ET.tostring(el, encoding="unicode"),
                        build, subject=BOOK_POOL)
        return Pool(self, raw, owned=True)

    def image_dir(self) -> str | None:
        """The usual directory of disk images for this URI (None where there is none)."""
        if self.is_test:
            return "/default-pool"
        if self.uri.startswith("qemu"):
            if self.uri.rstrip("/").endswith("/system"):
                return SYSTEM_IMAGE_DIR
            if self.uri.rstrip("/").endswith("/session"):
                return os.path.expanduser(SESSION_IMAGE_DIR)
        return None
