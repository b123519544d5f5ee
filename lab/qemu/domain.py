"""The domain XML of a trap-counting run: the exercise's spec plus what the run needs.

The disk part is :class:`lab.virt.DomainSpec` itself: the exercise's emulated
domain (``bus='ide'``), its virtio domain (``bus='virtio'``) and AHCI
(``bus='sata'``, the emulated controller of today's machines). The run adds,
to that spec's XML and nowhere else:

* direct kernel boot of the guest kit (``<kernel>``, ``<initrd>``, ``<cmdline>``),
  ACPI (so that the guest's ``poweroff`` ends the domain) and ``destroy`` on
  power-off, reboot and crash (a kernel panic reboots: ``panic=-1``);
* no NIC and no network: the exercise's NIC lines are dropped, because a NIC
  would add its own register accesses to the count (and these machines must
  not start libvirt's ``default`` network);
* ``<memballoon model='none'/>`` and ``<controller type='usb' model='none'/>``:
  libvirt adds both by default and both would add register accesses;
* the serial console to a file (its tail explains a guest that does not finish);
* ``<seclabel type='none'/>``: libvirt does not relabel the files (the kit is
  shared by concurrent runs); the run's own files are made writable instead;
* in QEMU's command-line namespace: an ``isa-debugcon`` device on port 0x402
  (the guest's phase markers) and ``-trace`` / ``-D`` for the trace events
  of :mod:`lab.qemu.trace`.

``ioeventfd='off'`` on the virtio disk's ``<driver>`` is libvirt's own
attribute: the second virtio run, where the kick is a register write.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from lab.qemu.trace import EVENTS
from lab.virt.spec import Disk, DomainSpec

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
MARKER_PORT = 0x402
#: The disk configurations measured: name -> (libvirt bus, ioeventfd on the disk driver).
CONFIGS: dict[str, tuple[str, bool | None]] = {
    "ide": ("ide", None),
    "ahci": ("sata", None),
    "virtio": ("virtio", None),
    "virtio-noioeventfd": ("virtio", False),
}
MEMORY_MIB = 512


@dataclass(frozen=True)
class RunFiles:
    """Where the run's disk image, trace and console log are (all in one scratch folder)."""

    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "disk.raw"

    @property
    def trace(self) -> Path:
        return self.folder / "trace.log"

    @property
    def console(self) -> Path:
        return self.folder / "console.log"


def exercise_spec(config: str, name: str, disk_path: str, domain_type: str = "qemu") -> DomainSpec:
    """The exercise's domain for ``config`` (``ide``, ``ahci``, ``virtio``...), without its NIC."""
    bus, _ = CONFIGS[config]
    family = "virtio" if bus == "virtio" else "emulated"
    base = DomainSpec(name=name, memory_mib=MEMORY_MIB, vcpus=1, domain_type=domain_type, machine="pc",
                      disks=(Disk(disk_path, bus="virtio", format="raw"),), nic="virtio",
                      description=f"lab.qemu trap count: {config}")
    spec = base.with_family(family).replace(nic=None)
    if bus != spec.disks[0].bus:
        spec = spec.replace(disks=(Disk(disk_path, bus=bus, format="raw"),))
    return spec


def _qemu_args(files: RunFiles) -> list[str]:
    args = ["-chardev", "null,id=labmark",
            "-device", f"isa-debugcon,iobase={MARKER_PORT:#x},chardev=labmark"]
    for event in EVENTS:
        args += ["-trace", f"enable={event}"]
    return args + ["-D", str(files.trace)]


def run_xml(spec: DomainSpec, config: str, kernel: Path, initrd: Path, cmdline: str, files: RunFiles) -> str:
    """``spec``'s XML with the run's additions (see the module docstring)."""
    ET.register_namespace("qemu", QEMU_NS)
    dom = spec.to_element()
    os_el = dom.find("os")
    assert os_el is not None
    for tag, text in (("kernel", str(kernel)), ("initrd", str(initrd)), ("cmdline", cmdline)):
        ET.SubElement(os_el, tag).text = text
    after_os = list(dom).index(os_el) + 1
    for event in ("on_crash", "on_reboot", "on_poweroff"):  # each inserted in front of the previous one
        el = ET.Element(event)
        el.text = "destroy"
        dom.insert(after_os, el)
    features = ET.Element("features")  # ACPI: without it QEMU gets -no-acpi and poweroff only halts
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    dom.insert(after_os, features)
    devices = dom.find("devices")
    assert devices is not None
    _, ioeventfd = CONFIGS[config]
    if ioeventfd is not None:
        driver = devices.find("disk/driver")
        assert driver is not None
        driver.set("ioeventfd", "on" if ioeventfd else "off")
    ET.SubElement(devices, "controller", type="usb", model="none")
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(files.console))
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    ET.SubElement(dom, "seclabel", type="none")
    cmd = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
    for arg in _qemu_args(files):
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=arg)
    tree = ET.ElementTree(dom)
    ET.indent(tree, space="  ")
    return ET.tostring(dom, encoding="unicode") + "\n"
