"""Typed descriptions of a domain and a volume, rendered to libvirt XML and read back.

libvirt is declarative: a domain is an XML document (``<domain type='kvm'>``)
that says what the virtual machine consists of; ``virsh define`` hands it to
the daemon. Here the document is built from a :class:`DomainSpec` with
:mod:`xml.etree.ElementTree` (never by pasting strings, so a name can never
inject markup), and :meth:`DomainSpec.from_xml` reads the same fields back,
also from the richer XML libvirt returns (``virsh dumpxml``).

Every value is checked when the spec is made (:class:`SpecError`), before
anything reaches libvirt.

Networking: a spec has either no NIC or one NIC on QEMU's user-mode network
(``<interface type='user'>``). The book never attaches a domain to a libvirt
network such as ``default``: that would start a bridge on a private address
range on the host.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from lab.virt.errors import SpecError

#: A libvirt-safe, shell-safe domain or volume name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}")
DOMAIN_TYPES = ("kvm", "qemu", "test")
DISK_BUSES = ("virtio", "ide", "sata")
DISK_FORMATS = ("qcow2", "raw")
NIC_MODELS = ("virtio", "e1000")
BOOT_DEVICES = ("hd", "cdrom", "network")
MEMORY_MIB_RANGE = (16, 1024 * 1024)
VCPU_RANGE = (1, 255)
VOLUME_MIB_RANGE = (1, 1024 * 1024)

#: Target device prefix and the most disks a bus takes in this book's specs.
_BUS_TARGET = {"virtio": ("vd", 26), "ide": ("hd", 4), "sata": ("sd", 6)}
#: The device model each family uses: what the hands-on chapter compares.
FAMILIES = {
    "virtio": {"disk_bus": "virtio", "nic": "virtio"},
    "emulated": {"disk_bus": "ide", "nic": "e1000"},
}

_UNITS = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}


def check_name(name: object, what: str = "domain") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"{what} name {name!r} is not allowed: use 1-63 letters, digits, '_', '.', '+' or '-', "
            f"starting with a letter or digit (e.g. 'labbook-demo')"
        )
    return name


def _check_int(value: object, what: str, lo: int, hi: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{what} must be an integer{unit and ' (' + unit + ')'}, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{what} {value}{unit and ' ' + unit} is outside {lo}..{hi}")
    return value


def _check_choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SpecError(f"{what} {value!r} is not one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def to_bytes(value: str, unit: str | None) -> int:
    """A libvirt size (``<memory unit='KiB'>65536</memory>``) in bytes; libvirt's default unit is KiB."""
    u = (unit or "KiB").lower()
    if u not in _UNITS:
        raise SpecError(f"unknown size unit {unit!r}")
    try:
        return int(value.strip()) * _UNITS[u]
    except ValueError:
        raise SpecError(f"size {value!r} is not an integer") from None


# --------------------------------------------------------------------------- disks and volumes


@dataclass(frozen=True)
class Disk:
    """A disk image attached to the domain.

    ``path`` is the image file (for instance what :meth:`Volume.path` returns),
    ``bus`` the device the guest sees (``virtio`` paravirtual, ``ide`` or
    ``sata`` emulated), ``format`` the image format QEMU reads.
    """

    path: str
    bus: str = "virtio"
    format: str = "qcow2"
    device: str = "disk"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/") or "\x00" in self.path:
            raise SpecError(f"disk path {self.path!r} must be an absolute file path")
        _check_choice(self.bus, "disk bus", DISK_BUSES)
        _check_choice(self.format, "disk format", DISK_FORMATS)
        _check_choice(self.device, "disk device", ("disk", "cdrom"))


@dataclass(frozen=True)
class VolumeSpec:
    """A volume to create in a libvirt storage pool (``virsh vol-create-as``)."""

    name: str
    capacity_mib: int
    format: str = "qcow2"

    def __post_init__(self) -> None:
        check_name(self.name, "volume")
        _check_int(self.capacity_mib, "volume capacity", *VOLUME_MIB_RANGE, unit="MiB")
        _check_choice(self.format, "volume format", DISK_FORMATS)

    def to_element(self) -> ET.Element:
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = self.name
        ET.SubElement(vol, "capacity", unit="MiB").text = str(self.capacity_mib)
        # qcow2 grows on demand: nothing is allocated up front.
        ET.SubElement(vol, "allocation", unit="MiB").text = "0"
        target = ET.SubElement(vol, "target")
        ET.SubElement(target, "format", type=self.format)
        return vol

    def to_xml(self) -> str:
        return _serialize(self.to_element())


# --------------------------------------------------------------------------- domain


@dataclass(frozen=True)
class DomainSpec:
    """What a domain consists of; :meth:`to_xml` renders libvirt's domain XML.

    ``nic`` is ``None`` (no network card) or the model of one card on QEMU's
    user-mode network: ``virtio`` (paravirtual) or ``e1000`` (an emulated
    Intel card). ``boot`` lists boot devices in order.
    """

    name: str
    memory_mib: int = 64
    vcpus: int = 1
    disks: tuple[Disk, ...] = ()
    nic: str | None = None
    boot: tuple[str, ...] = ("hd",)
    domain_type: str = "kvm"
    arch: str = "x86_64"
    machine: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        _check_int(self.memory_mib, "memory", *MEMORY_MIB_RANGE, unit="MiB")
        _check_int(self.vcpus, "vcpus", *VCPU_RANGE)
        _check_choice(self.domain_type, "domain type", DOMAIN_TYPES)
        if not isinstance(self.disks, tuple) or not all(isinstance(d, Disk) for d in self.disks):
            raise SpecError("disks must be a tuple of Disk")
        if self.nic is not None:
            _check_choice(self.nic, "NIC model", NIC_MODELS)
        if not isinstance(self.boot, tuple) or not self.boot:
            raise SpecError("boot must be a non-empty tuple, e.g. ('hd',)")
        for dev in self.boot:
            _check_choice(dev, "boot device", BOOT_DEVICES)
        if len(set(self.boot)) != len(self.boot):
            raise SpecError(f"boot order {self.boot} names a device twice")
        if not re.fullmatch(r"[a-z0-9_]+", self.arch or ""):
            raise SpecError(f"arch {self.arch!r} is not an architecture name such as x86_64")
        if self.machine is not None and not re.fullmatch(r"[a-z0-9_.-]+", self.machine):
            raise SpecError(f"machine {self.machine!r} is not a machine type such as pc or q35")
        paths = [d.path for d in self.disks]
        if len(set(paths)) != len(paths):
            raise SpecError("the same disk image is attached twice")
        for bus, (_prefix, limit) in _BUS_TARGET.items():
            n = sum(1 for d in self.disks if d.bus == bus)
            if n > limit:
                raise SpecError(f"{n} disks on bus {bus}: this book's specs allow at most {limit}")

    # -- variants ------------------------------------------------------------

    def replace(self, **changes: object) -> DomainSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_family(self, family: str) -> DomainSpec:
        """The same machine with ``virtio`` (paravirtual) or ``emulated`` (IDE, e1000) devices."""
        _check_choice(family, "device family", tuple(FAMILIES))
        f = FAMILIES[family]
        disks = tuple(dataclasses.replace(d, bus=f["disk_bus"]) for d in self.disks)
        return self.replace(disks=disks, nic=f["nic"] if self.nic is not None else None)

    # -- rendering -----------------------------------------------------------

    def targets(self) -> list[str]:
        """The guest device name of each disk (vda, hda, sda, ...), in order."""
        used: dict[str, int] = {}
        names = []
        for d in self.disks:
            prefix, _ = _BUS_TARGET[d.bus]
            i = used.get(d.bus, 0)
            used[d.bus] = i + 1
            names.append(prefix + "abcdefghijklmnopqrstuvwxyz"[i])
        return names

    def to_element(self) -> ET.Element:
        dom = ET.Element("domain", type=self.domain_type)
        ET.SubElement(dom, "name").text = self.name
        if self.description:
            ET.SubElement(dom, "description").text = self.description
        ET.SubElement(dom, "memory", unit="MiB").text = str(self.memory_mib)
        ET.SubElement(dom, "vcpu").text = str(self.vcpus)
        os_el = ET.SubElement(dom, "os")
        type_attrs = {"arch": self.arch}
        if self.machine:
            type_attrs["machine"] = self.machine
        ET.SubElement(os_el, "type", type_attrs).text = "hvm"
        for dev in self.boot:
            ET.SubElement(os_el, "boot", dev=dev)
        devices = ET.SubElement(dom, "devices")
        for disk, target in zip(self.disks, self.targets(), strict=True):
            d = ET.SubElement(devices, "disk", type="file", device=disk.device)
            ET.SubElement(d, "driver", name="qemu", type=disk.format)
            ET.SubElement(d, "source", file=disk.path)
            ET.SubElement(d, "target", dev=target, bus=disk.bus)
        if self.nic is not None:
            iface = ET.SubElement(devices, "interface", type="user")
            ET.SubElement(iface, "model", type=self.nic)
        return dom

    def to_xml(self) -> str:
        return _serialize(self.to_element())

    @classmethod
    def from_xml(cls, text: str) -> DomainSpec:
        """Read a domain XML (ours or ``virsh dumpxml``'s) back into a spec.

        Elements the spec does not model (controllers, addresses, emulator
        path) are ignored; a device the spec cannot express (a disk on another
        bus, a NIC on a libvirt network, a second NIC) is a :class:`SpecError`.
        """
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise SpecError(f"not well-formed XML: {exc}") from None
        if root.tag != "domain":
            raise SpecError(f"root element is <{root.tag}>, expected <domain>")
        name = root.findtext("name")
        if name is None:
            raise SpecError("<domain> has no <name>")
        mem = root.find("memory")
        if mem is None or mem.text is None:
            raise SpecError("<domain> has no <memory>")
        memory_bytes = to_bytes(mem.text, mem.get("unit"))
        if memory_bytes % (1024 * 1024):
            raise SpecError(f"memory {memory_bytes} bytes is not a whole number of MiB")
        vcpu_text = root.findtext("vcpu") or "1"
        try:
            vcpus = int(vcpu_text)
        except ValueError:
            raise SpecError(f"<vcpu> {vcpu_text!r} is not an integer") from None
        os_type = root.find("os/type")
        arch = os_type.get("arch", "x86_64") if os_type is not None else "x86_64"
        machine = os_type.get("machine") if os_type is not None else None
        boot = tuple(b.get("dev", "") for b in root.findall("os/boot")) or ("hd",)
        disks = []
        for d in root.findall("devices/disk"):
            if d.get("type") != "file":
                raise SpecError(f"disk of type {d.get('type')!r}: only file disks are modelled")
            source = d.find("source")
            target = d.find("target")
            driver = d.find("driver")
            if source is None or source.get("file") is None or target is None:
                raise SpecError("a <disk> lacks <source file=...> or <target>")
            disks.append(Disk(path=source.get("file", ""), bus=target.get("bus", ""),
                              format=driver.get("type", "raw") if driver is not None else "raw",
                              device=d.get("device", "disk")))
        ifaces = root.findall("devices/interface")
        if len(ifaces) > 1:
            raise SpecError(f"{len(ifaces)} network interfaces: the spec models at most one")
        nic = None
        if ifaces:
            if ifaces[0].get("type") != "user":
                raise SpecError(
                    f"interface of type {ifaces[0].get('type')!r}: the book uses only user-mode networking")
            model = ifaces[0].find("model")
            nic = model.get("type") if model is not None else "e1000"
        return cls(name=name, memory_mib=memory_bytes // (1024 * 1024), vcpus=vcpus,
                   disks=tuple(disks), nic=nic, boot=boot, domain_type=root.get("type", "kvm"),
                   arch=arch, machine=machine, description=root.findtext("description"))


def _serialize(element: ET.Element) -> str:
    tree = ET.ElementTree(element)
    ET.indent(tree, space="  ")
    return ET.tostring(element, encoding="unicode") + "\n"


# --------------------------------------------------------------------------- comparing and validating


def xml_diff(a: DomainSpec, b: DomainSpec, labels: tuple[str, str] | None = None) -> str:
    """A unified diff of the two specs' XML: the lines where they differ."""
    la, lb = labels or (a.name, b.name)
    return "".join(difflib.unified_diff(a.to_xml().splitlines(True), b.to_xml().splitlines(True),
                                        fromfile=la, tofile=lb, n=1))


def device_rows(spec: DomainSpec) -> list[dict[str, str]]:
    """One row per device of ``spec``: the XML element and what the guest sees."""
    rows = []
    for disk, target in zip(spec.disks, spec.targets(), strict=True):
        rows.append({"device": f"disk {target}", "element": f"<target dev='{target}' bus='{disk.bus}'/>",
                     "bus_or_model": disk.bus})
    if spec.nic is not None:
        rows.append({"device": "nic", "element": f"<model type='{spec.nic}'/>", "bus_or_model": spec.nic})
    return rows


def compare_families(spec: DomainSpec):
    """A table: each device of ``spec`` as an emulated device and as a virtio device."""
    import pandas as pd

    emulated, virtio = spec.with_family("emulated"), spec.with_family("virtio")
    rows = []
    for i, (e, v) in enumerate(zip(device_rows(emulated), device_rows(virtio), strict=True)):
        kind = "nic" if v["device"] == "nic" else f"disk {i + 1}"
        rows.append({"device": kind, "emulated": e["element"], "virtio": v["element"]})
    return pd.DataFrame(rows, columns=["device", "emulated", "virtio"]).set_index("device")


__all__ = [
    "Disk", "DomainSpec", "VolumeSpec", "SpecError", "check_name", "to_bytes",
    "xml_diff", "device_rows", "compare_families", "FAMILIES", "NAME_PATTERN",
]
