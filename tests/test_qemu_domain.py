"""The trap-counting run's domain XML: the exercise's spec plus only what the run needs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.bench import qemu_io
from lab.qemu import domain
from lab.virt.spec import DomainSpec
from lab.virt.validate import validate_xml

FILES = domain.RunFiles(Path("/var/tmp/labqemuio-test"))


def xml_for(config: str) -> ET.Element:
    spec = domain.exercise_spec(config, "labqemuio-t", str(FILES.disk))
    text = domain.run_xml(spec, config, Path("/kit/vmlinuz"), Path("/kit/initrd.img"), "console=ttyS0", FILES)
    return ET.fromstring(text)


@pytest.mark.parametrize("config, bus, target", [("ide", "ide", "hda"), ("ahci", "sata", "sda"),
                                                 ("virtio", "virtio", "vda")])
def test_disk_is_the_exercise_spec_without_nic(config, bus, target):
    spec = domain.exercise_spec(config, "labqemuio-t", "/d.raw")
    assert spec.nic is None and [d.bus for d in spec.disks] == [bus] and spec.targets() == [target]
    root = xml_for(config)
    assert root.find("devices/interface") is None
    assert root.find("devices/disk/target").get("bus") == bus
    # the run's XML is still a domain the spec reads back
    back = DomainSpec.from_xml(ET.tostring(root, encoding="unicode"))
    assert back.disks[0].bus == bus and back.nic is None


def test_emulated_and_virtio_are_the_exercise_families():
    emu = domain.exercise_spec("ide", "labqemuio-t", "/d.raw")
    vio = domain.exercise_spec("virtio", "labqemuio-t", "/d.raw")
    base = DomainSpec("labqemuio-t", memory_mib=domain.MEMORY_MIB, machine="pc", domain_type="qemu",
                      disks=vio.disks, description=vio.description)
    assert base.with_family("emulated").disks == emu.disks


def test_run_additions():
    root = xml_for("virtio")
    assert root.findtext("os/kernel") == "/kit/vmlinuz" and root.findtext("os/cmdline") == "console=ttyS0"
    assert root.find("features/acpi") is not None
    assert [root.findtext(e) for e in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy"] * 3
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    assert root.find("devices/serial/source").get("path") == str(FILES.console)
    assert root.find("devices/disk/driver").get("ioeventfd") is None
    args = [a.get("value") for a in root.find(f"{{{domain.QEMU_NS}}}commandline")]
    assert "isa-debugcon,iobase=0x402,chardev=labmark" in args
    assert args[args.index("-D") + 1] == str(FILES.trace)
    assert "enable=virtio_queue_notify" in args


def test_ioeventfd_off_is_libvirts_own_attribute():
    assert xml_for("virtio-noioeventfd").find("devices/disk/driver").get("ioeventfd") == "off"


def test_run_xml_validates_against_libvirts_schema():
    spec = domain.exercise_spec("ahci", "labqemuio-t", str(FILES.disk))
    v = validate_xml(domain.run_xml(spec, "ahci", Path("/k"), Path("/i"), "x", FILES))
    if not v.ran or "xmllint: not found" in v.output:
        pytest.skip(f"virt-xml-validate cannot run here: {v.output}")
    assert v.ok, v.output


def row(config="ide", op="read", requests=1000, accesses=26000):
    return {"config": config, "op": op, "requests": requests, "accesses": accesses,
            "per_request": accesses / requests}


def test_bench_status_rules():
    rows = [row(), row(requests=2000, accesses=52000), row(op="control", accesses=0)]
    assert [qemu_io._status(r, rows) for r in rows] == [("ok", "")] * 3
    bad = [row(), row(requests=2000, accesses=52001)]
    assert qemu_io._status(bad[1], bad)[1].startswith("accesses are not a whole number")
    differ = [row(), row(requests=2000, accesses=54000)]
    assert "differ" in qemu_io._status(differ[0], differ)[1]
    assert qemu_io._status(row(op="control", accesses=3), [])[0] == "error"


def test_accel_choice_is_explicit_when_asked():
    assert qemu_io.choose_accel("qemu") == "qemu" and qemu_io.choose_accel("kvm") == "kvm"
    assert qemu_io.choose_accel("auto") in ("qemu", "kvm")
