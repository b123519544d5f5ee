"""A notebook's libvirt session: everything it creates is removed again, also after an error.

:class:`Session` remembers each domain, volume and storage pool it created
and removes them in :meth:`Session.cleanup` (reverse order: domains are
destroyed and undefined, then volumes deleted, then a pool the session
created is destroyed). Cleanup runs when the ``with`` block ends, normally or
by an exception, and as a last resort when the Python process exits
(a notebook kernel being shut down), so a cell that fails halfway leaves
nothing behind.

Names carry a recognizable prefix (``labbook-`` for the book, ``labtest-``
for the tests) plus a short random token, so two runs never collide and
:func:`leftovers` can find what a killed run left.
"""

from __future__ import annotations

import atexit
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.virt.connection import OPERATIONS, Connection, Domain, Pool, Volume, connect, libvirt_module
from lab.virt.errors import CleanupError, NoSuchDomain, StorageError, VirtError
from lab.virt.spec import Disk, DomainSpec, VolumeSpec, check_name

BOOK_PREFIX = "labbook-"
TEST_PREFIX = "labtest-"


@dataclass(frozen=True)
class Step:
    """One row of the session's trace: what was done and the state afterwards."""

    operation: str
    virsh: str
    api: str
    domain: str
    state: str
    cpu_time_s: float | None


class Session:
    """Creates domains and volumes on one connection and removes them all again."""

    def __init__(self, conn: Connection | None = None, *, uri: str | None = None,
                 prefer: Iterable[str] = (), prefix: str = BOOK_PREFIX) -> None:
        if not prefix or not prefix.endswith("-"):
            raise ValueError(f"prefix {prefix!r} must be non-empty and end with '-'")
        self._owns_conn = conn is None
        self.conn = conn if conn is not None else connect(uri, prefer=prefer)
        self.prefix = prefix
        self.token = secrets.token_hex(3)
        self.domains: list[Domain] = []
        self.volumes: list[Volume] = []
        self.pools: list[Pool] = []
        self.trace: list[Step] = []
        self.cleaned: list[str] = []
        self._closed = False
        atexit.register(self._atexit)

    # -- names ---------------------------------------------------------------

    def name(self, stem: str) -> str:
        """``<prefix><stem>-<token>``: unique to this session, recognizable later."""
        return check_name(f"{self.prefix}{stem}-{self.token}")

    # -- creating ------------------------------------------------------------

    def pool(self) -> Pool:
        for p in self.pools:
            if p.raw is not None:
                return p
        p = self.conn.pool()
        if p.owned:
            self.pools.append(p)
        return p

    def volume(self, stem: str, capacity_mib: int = 16, fmt: str = "qcow2") -> Volume:
        """Create ``<prefix><stem>-<token>.<fmt>`` in a storage pool of this URI."""
        spec = VolumeSpec(f"{self.name(stem)}.{fmt}", capacity_mib, fmt)  # validated before libvirt
        vol = self.pool().create_volume(spec)
        self.volumes.append(vol)
        return vol

    def define(self, spec: DomainSpec) -> Domain:
        """``virsh define`` and remember the domain for cleanup; every operation is traced."""
        dom = self.conn.define(spec)
        dom.observer = self._observe
        self.domains.append(dom)
        self._observe("define", dom)
        return dom

    def machine(self, stem: str, *, disk_mib: int = 16, bus: str = "virtio", nic: str | None = None,
                memory_mib: int = 64, vcpus: int = 1, domain_type: str = "kvm") -> tuple[DomainSpec, Volume]:
        """A qcow2 volume and a spec that boots from it (not yet defined).

        If the spec is invalid, nothing is created; if the volume cannot be
        created, no spec is returned. The volume is already tracked for cleanup.
        """
        # Build (and so validate) the spec with a placeholder path first.
        probe = DomainSpec(self.name(stem), memory_mib=memory_mib, vcpus=vcpus, nic=nic,
                           disks=(Disk("/placeholder.qcow2", bus=bus),), domain_type=domain_type)
        vol = self.volume(stem, disk_mib)
        return probe.replace(disks=(Disk(vol.path, bus=bus, format="qcow2"),)), vol

    # -- tracing -------------------------------------------------------------

    def _observe(self, operation: str, dom: Domain) -> None:
        virsh, api = OPERATIONS[operation]
        if operation == "undefine":
            state, cpu = "(undefined)", None
        else:
            info = dom.info()
            state = info.state
            cpu = None if info.cpu_time_s is None else round(info.cpu_time_s, 3)
        self.trace.append(Step(operation, f"{virsh} {dom.name}", api, dom.name, state, cpu))

    def trace_frame(self):
        """The trace as a table: virsh command, libvirt API, state afterwards, CPU time."""
        import pandas as pd

        def cpu(step: Step) -> object:
            if step.cpu_time_s is None:
                return "-" if step.operation == "undefine" or not self.conn.is_test else "(test driver: none)"
            return step.cpu_time_s

        return pd.DataFrame(
            [(s.virsh, s.api, s.state, cpu(s)) for s in self.trace],
            columns=["virsh", "libvirt API", "state", "CPU time (s)"],
        )

    # -- cleanup -------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove everything this session created; returns what was done.

        Raises :class:`CleanupError` listing what is left (and the virsh
        commands that remove it) if something could not be removed.
        """
        done: list[str] = []
        left: list[str] = []
        for dom in reversed(self.domains):
            try:
                state = dom.state()
            except NoSuchDomain:
                done.append(f"domain {dom.name}: already gone")
                continue
            except VirtError as exc:
                left.append(f"domain {dom.name} ({exc}) -> virsh -c {self.conn.uri} destroy {dom.name}; "
                            f"virsh -c {self.conn.uri} undefine {dom.name} --snapshots-metadata")
                continue
            try:
                dom.observer = None
                if state != "shut off" and state != "crashed" and state != "no state":
                    dom.destroy()
                    done.append(f"domain {dom.name}: destroyed")
                dom.undefine()
                done.append(f"domain {dom.name}: undefined")
            except NoSuchDomain:
                done.append(f"domain {dom.name}: already gone")
            except VirtError as exc:
                left.append(f"domain {dom.name} ({exc}) -> virsh -c {self.conn.uri} destroy {dom.name}; "
                            f"virsh -c {self.conn.uri} undefine {dom.name} --snapshots-metadata")
        self.domains.clear()
        for vol in reversed(self.volumes):
            try:
                vol.delete()
                done.append(f"volume {vol.name}: deleted")
            except StorageError as exc:
                if exc.libvirt_code == 50:  # VIR_ERR_NO_STORAGE_VOL
                    done.append(f"volume {vol.name}: already gone")
                else:
                    left.append(f"volume {vol.path} ({exc}) -> virsh -c {self.conn.uri} vol-delete {vol.path}")
            except VirtError as exc:
                left.append(f"volume {vol.path} ({exc}) -> virsh -c {self.conn.uri} vol-delete {vol.path}")
        self.volumes.clear()
        for pool in reversed(self.pools):
            try:
                if pool.release():
                    done.append(f"pool {pool.name}: destroyed (it was created by this session)")
            except VirtError as exc:
                left.append(f"pool {pool.name} ({exc}) -> virsh -c {self.conn.uri} pool-destroy {pool.name}")
        self.pools.clear()
        self.cleaned.extend(done)
        if left:
            raise CleanupError("cleanup left these behind: " + "; ".join(left), uri=self.conn.uri,
                               operation="cleanup")
        return done

    def close(self) -> list[str]:
        """Clean up, then close the connection if the session opened it."""
        if self._closed:
            return []
        try:
            return self.cleanup()
        finally:
            self._closed = True
            atexit.unregister(self._atexit)
            if self._owns_conn:
                self.conn.close()

    def _atexit(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing sensible to do at interpreter exit
            pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # An exception is on its way: clean up as far as possible and let the
        # original error through; a cleanup failure is attached as a note.
        try:
            self.close()
        except CleanupError as cleanup_exc:
            if hasattr(exc, "add_note"):
                exc.add_note(str(cleanup_exc))

    def cleaned_frame(self):
        import pandas as pd

        return pd.DataFrame({"cleanup": self.cleaned})


def session(uri: str | None = None, *, prefer: Iterable[str] = (), prefix: str = BOOK_PREFIX) -> Session:
    """Open a :class:`Session`; use it as ``with virt.session(...) as s:`` or call ``s.close()``."""
    return Session(uri=uri, prefer=prefer, prefix=prefix)


# --------------------------------------------------------------------------- leftovers


def leftovers(conn: Connection, prefix: str) -> dict[str, list[str]]:
    """Domains and volumes whose names start with ``prefix`` (what a killed run left)."""
    libvirt = libvirt_module()
    found: dict[str, list[str]] = {"domains": [d.name for d in conn.domains("all", prefix)], "volumes": []}
    try:
        pools = conn.raw.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    except libvirt.libvirtError:
        pools = []
    for p in pools:
        try:
            p.refresh(0)
            found["volumes"] += [f"{p.name()}/{v}" for v in p.listVolumes() if v.startswith(prefix)]
        except libvirt.libvirtError:
            continue
    return found


def remove_leftovers(conn: Connection, prefix: str) -> list[str]:
    """Destroy, undefine and delete every domain and volume named ``prefix...``."""
    check_name(prefix.rstrip("-") or "x", "prefix")
    libvirt = libvirt_module()
    done = []
    for dom in conn.domains("all", prefix):
        if dom.state() not in ("shut off", "crashed", "no state"):
            dom.destroy()
        dom.undefine()
        done.append(f"domain {dom.name}")
    for entry in leftovers(conn, prefix)["volumes"]:
        pool_name, vol_name = entry.split("/", 1)
        pool = conn.raw.storagePoolLookupByName(pool_name)
        try:
            pool.storageVolLookupByName(vol_name).delete(0)
        except libvirt.libvirtError as exc:
            raise StorageError(f"cannot delete leftover volume {entry}: {exc}", uri=conn.uri,
                               operation="volume-delete") from exc
        done.append(f"volume {entry}")
    return done
