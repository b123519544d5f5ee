"""One libvirt domain and its lifecycle: the states, what each operation allows, ``virsh dominfo``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.virt.errors import InvalidState, libvirt_module, translate
from lab.virt.spec import DomainSpec, check_name

if TYPE_CHECKING:
    import pandas as pd

    from lab.virt.connection import Connection

#: virDomainState -> the word virsh prints for it.
STATE_NAMES = {
    0: "no state", 1: "running", 2: "idle", 3: "paused", 4: "in shutdown",
    5: "shut off", 6: "crashed", 7: "pmsuspended",
}
ACTIVE_STATES = {"running", "idle", "paused", "in shutdown", "pmsuspended", "crashed"}

#: Which states allow which operation; checked before libvirt is asked, so the
#: error is the same on every driver.
ALLOWED_STATES: dict[str, frozenset[str]] = {
    "start": frozenset({"shut off", "crashed"}),
    "suspend": frozenset({"running", "idle"}),
    "resume": frozenset({"paused"}),
    "shutdown": frozenset({"running", "idle", "paused"}),
    "reboot": frozenset({"running", "idle"}),
    "destroy": frozenset(ACTIVE_STATES),
    "undefine": frozenset({"shut off", "crashed", "no state"}),
}


def cpu_seconds(seconds: float | None) -> object:
    """CPU time for a table: seconds with 3 decimals, or a note on the test driver."""
    return "(test driver: none)" if seconds is None else round(seconds, 3)


@dataclass(frozen=True)
class DomainInfo:
    """``virsh dominfo`` as a record (virDomainGetInfo plus a few lookups)."""

    name: str
    id: int | None
    state: str
    vcpus: int
    max_memory_kib: int
    memory_kib: int
    #: Seconds of CPU the domain used; None on the test driver, which reports
    #: the host's clock there instead of a CPU time.
    cpu_time_s: float | None
    persistent: bool

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("Name", self.name), ("Id", self.id if self.id is not None else "-"), ("State", self.state),
            ("CPU(s)", self.vcpus), ("CPU time (s)", cpu_seconds(self.cpu_time_s)),
            ("Max memory (KiB)", self.max_memory_kib), ("Used memory (KiB)", self.memory_kib),
            ("Persistent", "yes" if self.persistent else "no"),
        ]

    def frame(self) -> pd.DataFrame:
        import pandas as pd  # on use: lab.virt runs on a bare Python (a non-root reader's)

        return pd.DataFrame(self.rows(), columns=["field", "value"]).set_index("field")


class Domain:
    """One libvirt domain; each method is one lifecycle operation (see :data:`OPERATIONS`)."""

    def __init__(self, conn: Connection, raw: Any) -> None:
        self.conn, self.raw = conn, raw
        self.name: str = raw.name()
        #: Called as ``observer(operation, domain)`` after each successful operation.
        self.observer: Callable[[str, Domain], None] | None = None

    def __repr__(self) -> str:
        return f"<Domain {self.name} on {self.conn.uri}>"

    def _done(self, operation: str) -> Domain:
        if self.observer is not None:
            self.observer(operation, self)
        return self

    def _call(self, operation: str, fn: Callable[..., Any], *args: Any) -> Any:
        return self.conn.call(operation, fn, *args, subject=self.name)

    def _require(self, operation: str) -> None:
        state = self.state()
        allowed = ALLOWED_STATES[operation]
        if state not in allowed:
            hint = {
                "start": "it is already active; destroy or shut it down first",
                "suspend": "only a running domain can be suspended; start it first" if state == "shut off"
                           else "it is not running",
                "resume": "only a paused (suspended) domain can be resumed",
                "shutdown": "it is not running",
                "reboot": "it is not running",
                "destroy": "it is not running",
                "undefine": "undefining an active domain would leave it running as a transient domain; "
                            "destroy it first",
            }[operation]
            raise InvalidState(
                f"{operation} {self.name!r} refused on {self.conn.uri}: the domain is {state!r} -> {hint} "
                f"(allowed in: {', '.join(sorted(allowed))})",
                uri=self.conn.uri, operation=operation)

    # -- observation ---------------------------------------------------------

    def state(self) -> str:
        code, _reason = self._call("dominfo", self.raw.state, 0)
        return STATE_NAMES.get(code, f"unknown ({code})")

    def info(self) -> DomainInfo:
        state, max_mem, mem, vcpus, cpu_ns = self._call("dominfo", self.raw.info)
        dom_id = self._call("dominfo", self.raw.ID)
        return DomainInfo(
            name=self.name, id=dom_id if dom_id >= 0 else None, state=STATE_NAMES.get(state, str(state)),
            vcpus=vcpus, max_memory_kib=max_mem, memory_kib=mem,
            cpu_time_s=None if self.conn.is_test else cpu_ns / 1e9,
            persistent=bool(self._call("dominfo", self.raw.isPersistent)),
        )

    def xml(self) -> str:
        return self._call("dumpxml", self.raw.XMLDesc, 0)

    def spec(self) -> DomainSpec:
        """The domain's XML as libvirt now holds it, read back into a spec."""
        return DomainSpec.from_xml(self.xml())

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Domain:
        self._require("start")
        self._call("start", self.raw.create)
        return self._done("start")

    def suspend(self) -> Domain:
        self._require("suspend")
        self._call("suspend", self.raw.suspend)
        return self._done("suspend")

    def resume(self) -> Domain:
        self._require("resume")
        self._call("resume", self.raw.resume)
        return self._done("resume")

    def shutdown(self) -> Domain:
        """Ask the guest to power off (ACPI). A guest without an OS never answers: use destroy."""
        self._require("shutdown")
        self._call("shutdown", self.raw.shutdown)
        return self._done("shutdown")

    def reboot(self) -> Domain:
        self._require("reboot")
        self._call("reboot", self.raw.reboot, 0)
        return self._done("reboot")

    def destroy(self) -> Domain:
        """Pull the plug: stop the domain at once (the definition stays)."""
        self._require("destroy")
        self._call("destroy", self.raw.destroy)
        return self._done("destroy")

    def undefine(self) -> None:
        """Forget the definition (and the metadata of its snapshots)."""
        libvirt = libvirt_module()
        self._require("undefine")
        flags = libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        try:
            self.raw.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG):
                raise translate(exc, operation="undefine", uri=self.conn.uri, subject=self.name) from exc
            self._call("undefine", self.raw.undefine)
        self._done("undefine")

    # -- snapshots -----------------------------------------------------------

    def snapshot_create(self, name: str, description: str | None = None) -> Domain:
        """``virsh snapshot-create-as``: save disk (and, when running, memory) state under ``name``."""
        check_name(name, "snapshot")
        if name in self.snapshots():
            raise InvalidState(
                f"snapshot-create {name!r} refused on {self.conn.uri}: domain {self.name!r} already has a "
                f"snapshot of that name -> choose another name or delete it first", uri=self.conn.uri,
                operation="snapshot-create")
        el = ET.Element("domainsnapshot")
        ET.SubElement(el, "name").text = name
        if description:
            ET.SubElement(el, "description").text = description
        self._call("snapshot-create", self.raw.snapshotCreateXML, ET.tostring(el, encoding="unicode"), 0)
        return self._done("snapshot-create")

    def snapshots(self) -> list[str]:
        snaps = self._call("snapshot-list", self.raw.listAllSnapshots, 0)
        return sorted(s.getName() for s in snaps)

    def _snapshot(self, name: str) -> Any:
        check_name(name, "snapshot")
        return self._call("snapshot-lookup", self.raw.snapshotLookupByName, name, 0)

    def snapshot_revert(self, name: str) -> Domain:
        snap = self._snapshot(name)
        self._call("snapshot-revert", self.raw.revertToSnapshot, snap, 0)
        return self._done("snapshot-revert")

    def snapshot_delete(self, name: str) -> Domain:
        snap = self._snapshot(name)
        self._call("snapshot-delete", snap.delete, 0)
        return self._done("snapshot-delete")
