"""lab.virt.spec: typed domain specs -> libvirt XML (ElementTree) and back, validated first."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import execute_chapter

from lab.virt import errors
from lab.virt.spec import (
    Disk,
    DomainSpec,
    SpecError,
    VolumeSpec,
    check_name,
    device_rows,
    to_bytes,
    xml_diff,
)
from lab.virt.validate import validate_xml


def spec(**kw) -> DomainSpec:
    base = dict(name="labtest-spec", disks=(Disk("/var/lib/libvirt/images/a.qcow2"),))
    base.update(kw)
    return DomainSpec(**base)


VARIANTS = [
    spec(),
    spec(nic="virtio"),
    spec(nic="e1000", memory_mib=128, vcpus=2),
    spec(disks=(Disk("/i/a.qcow2", bus="ide"), Disk("/i/b.raw", bus="ide", format="raw"))),
    spec(disks=(Disk("/i/a.qcow2", bus="sata"), Disk("/i/c.iso", bus="sata", format="raw", device="cdrom")),
         boot=("cdrom", "hd")),
    spec(disks=(), nic=None, domain_type="qemu", machine="pc", description="x < y & 'z'"),
]


def test_xml_is_the_declarative_kvm_virtio_document():
    root = ET.fromstring(spec(nic="virtio").to_xml())
    assert root.tag == "domain" and root.get("type") == "kvm"
    assert root.findtext("name") == "labtest-spec"
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "64"
    assert root.findtext("vcpu") == "1"
    assert root.findtext("os/type") == "hvm" and root.find("os/type").get("arch") == "x86_64"
    assert [b.get("dev") for b in root.findall("os/boot")] == ["hd"]
    disk = root.find("devices/disk")
    assert disk.get("type") == "file" and disk.get("device") == "disk"
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}
    assert disk.find("source").get("file") == "/var/lib/libvirt/images/a.qcow2"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    iface = root.find("devices/interface")
    assert iface.get("type") == "user", "never a libvirt network such as 'default'"
    assert iface.find("model").get("type") == "virtio"


def test_no_nic_means_no_interface_element():
    assert ET.fromstring(spec().to_xml()).find("devices/interface") is None


@pytest.mark.parametrize("s", VARIANTS, ids=lambda s: f"{s.name}-{s.nic}-{len(s.disks)}")
def test_round_trip(s):
    assert DomainSpec.from_xml(s.to_xml()) == s


def test_targets_follow_the_bus():
    s = spec(disks=(Disk("/a.qcow2"), Disk("/b.qcow2", bus="ide"), Disk("/c.qcow2"), Disk("/d.qcow2", bus="sata")))
    assert s.targets() == ["vda", "hda", "vdb", "sda"]


def test_markup_in_values_is_escaped_not_injected():
    s = spec(description="</description><devices><disk/></devices>")
    root = ET.fromstring(s.to_xml())
    assert root.findtext("description") == "</description><devices><disk/></devices>"
    assert len(root.findall("devices/disk")) == 1


@pytest.mark.parametrize("name", ["", "-lead", "a b", "a<b", "a'b", "x" * 64, "a/b", None, 3])
def test_bad_names_are_refused_before_libvirt(name):
    with pytest.raises(SpecError, match="not allowed"):
        spec(name=name)


@pytest.mark.parametrize("kw, match", [
    (dict(memory_mib=0), "memory"),
    (dict(memory_mib=True), "memory"),
    (dict(memory_mib=64.0), "memory"),
    (dict(vcpus=0), "vcpus"),
    (dict(vcpus=1000), "vcpus"),
    (dict(nic="rtl8139"), "NIC model"),
    (dict(boot=()), "boot"),
    (dict(boot=("hd", "hd")), "twice"),
    (dict(boot=("floppy",)), "boot device"),
    (dict(domain_type="xen"), "domain type"),
    (dict(arch="x86 64"), "arch"),
    (dict(machine="pc;rm"), "machine"),
    (dict(disks=[Disk("/a.qcow2")]), "tuple"),
    (dict(disks=(Disk("/a.qcow2"), Disk("/a.qcow2"))), "twice"),
    (dict(disks=tuple(Disk(f"/{i}.qcow2", bus="ide") for i in range(5))), "at most 4"),
])
def test_invalid_specs(kw, match):
    with pytest.raises(SpecError, match=match):
        spec(**kw)


@pytest.mark.parametrize("kw, match", [
    (dict(path="relative.qcow2"), "absolute"),
    (dict(path="/a.qcow2", bus="scsi"), "disk bus"),
    (dict(path="/a.qcow2", format="vmdk"), "disk format"),
    (dict(path="/a.qcow2", device="floppy"), "disk device"),
])
def test_invalid_disks(kw, match):
    with pytest.raises(SpecError, match=match):
        Disk(**kw)


def test_volume_spec():
    root = ET.fromstring(VolumeSpec("labtest-v.qcow2", 16).to_xml())
    assert root.findtext("name") == "labtest-v.qcow2"
    assert root.find("capacity").get("unit") == "MiB" and root.findtext("capacity") == "16"
    assert root.find("target/format").get("type") == "qcow2"
    for bad, match in [(dict(name="a/b", capacity_mib=1), "not allowed"), (dict(name="v", capacity_mib=0), "capacity"),
                       (dict(name="v", capacity_mib=1, format="vdi"), "format")]:
        with pytest.raises(SpecError, match=match):
            VolumeSpec(**bad)


def test_families_and_the_xml_difference():
    virtio = spec(nic="virtio")
    emulated = virtio.with_family("emulated")
    assert emulated.disks[0].bus == "ide" and emulated.nic == "e1000" and emulated.targets() == ["hda"]
    assert emulated.with_family("virtio") == virtio
    diff = xml_diff(emulated, virtio, ("emulated", "virtio"))
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert any('bus="ide"' in line for line in removed) and any('bus="virtio"' in line for line in added)
    assert any('"e1000"' in line for line in removed) and any('"virtio"' in line for line in added)
    assert len(removed) == len(added) == 2, diff
    assert [r["bus_or_model"] for r in device_rows(emulated)] == ["ide", "e1000"]
    with pytest.raises(SpecError):
        virtio.with_family("paravirt")
    assert spec().with_family("emulated").nic is None, "a spec without NIC stays without NIC"


@pytest.mark.parametrize("text, match", [
    ("<domain", "well-formed"),
    ("<network/>", "expected <domain>"),
    ("<domain type='kvm'><memory>1024</memory></domain>", "no <name>"),
    ("<domain type='kvm'><name>a</name></domain>", "no <memory>"),
    ("<domain type='kvm'><name>a</name><memory unit='KiB'>1000</memory></domain>", "whole number of MiB"),
    ("<domain type='kvm'><name>a</name><memory unit='parsecs'>1</memory></domain>", "unit"),
    ("<domain type='kvm'><name>a</name><memory>65536</memory><vcpu>two</vcpu></domain>", "vcpu"),
    ("<domain type='kvm'><name>a</name><memory>65536</memory><devices>"
     "<interface type='network'><source network='default'/></interface></devices></domain>", "user-mode"),
    ("<domain type='kvm'><name>a</name><memory>65536</memory><devices>"
     "<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vda' bus='virtio'/></disk>"
     "</devices></domain>", "only file disks"),
])
def test_from_xml_refuses_what_it_cannot_model(text, match):
    with pytest.raises(SpecError, match=match):
        DomainSpec.from_xml(text)


def test_from_xml_reads_libvirt_defaults():
    s = DomainSpec.from_xml("<domain type='kvm'><name>a</name><memory>65536</memory></domain>")
    assert (s.memory_mib, s.vcpus, s.boot, s.disks, s.nic) == (64, 1, ("hd",), (), None)


@pytest.mark.parametrize("value, unit, expected", [
    ("65536", None, 64 * 1024**2), ("64", "MiB", 64 * 1024**2), ("1", "G", 1024**3), ("1", "GB", 10**9),
    ("512", "bytes", 512),
])
def test_to_bytes(value, unit, expected):
    assert to_bytes(value, unit) == expected


def test_check_name_returns_the_name():
    assert check_name("labtest-ok_1.2+3") == "labtest-ok_1.2+3"


def test_spec_error_is_a_value_error_not_a_virt_error():
    assert issubclass(SpecError, ValueError) and not issubclass(SpecError, errors.VirtError)


@pytest.fixture(scope="module")
def validator():
    """virt-xml-validate and xmllint are declared test programs (tools/programs.tsv): missing is a failure."""
    for program, package in (("virt-xml-validate", "libvirt-clients"), ("xmllint", "libxml2-utils")):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing: apt-get install {package} (make test installs it as root)")


@pytest.mark.parametrize("s", VARIANTS + [VARIANTS[1].with_family("emulated")],
                         ids=lambda s: f"{s.name}-{s.nic}-{len(s.disks)}")
def test_rendered_xml_passes_virt_xml_validate(validator, s):
    result = validate_xml(s.to_xml())
    assert result.ran and result.ok, result.output


def test_virt_xml_validate_catches_an_invalid_document(validator):
    result = validate_xml("<domain type='kvm'><memory>1</memory></domain>")
    assert result.ran and result.ok is False and "<domain.xml>" in result.output


def test_validate_xml_without_the_tool(tmp_path):
    missing = validate_xml("<domain/>", tool=str(tmp_path / "no-such-tool"))
    assert missing.ran is False and missing.ok is None and "could not run" in missing.output
    assert missing.verdict == "not run"


def test_validate_xml_without_xmllint_did_not_run(validator, tmp_path, monkeypatch):
    # virt-xml-validate found, xmllint hidden from PATH: nothing was validated,
    # which must not read as "invalid".
    (tmp_path / "virt-xml-validate").symlink_to(shutil.which("virt-xml-validate"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = validate_xml(VARIANTS[0].to_xml())
    assert (result.ran, result.ok, result.verdict) == (False, None, "not run")
    assert "xmllint" in result.output and "libxml2-utils" in result.output


def test_validator_that_cannot_start_xmllint_did_not_run(validator, tmp_path):
    # The real validator run with a PATH that lacks xmllint fails with the
    # shell's "not found" (exit 127): "did not run", not "invalid".
    wrapper = tmp_path / "validate-without-xmllint"
    wrapper.write_text(f'#!/bin/sh\nPATH=/nonexistent exec {shutil.which("virt-xml-validate")} "$@"\n')
    wrapper.chmod(0o755)
    result = validate_xml(VARIANTS[0].to_xml(), tool=str(wrapper))
    assert (result.ran, result.ok) == (False, None) and "not found" in result.output


@pytest.mark.full
def test_lifecycle_chapter_without_xmllint_says_not_checked(validator, tmp_path, monkeypatch):
    # Execute the lifecycle chapter with every program on PATH except xmllint:
    # its validation cell must say "not checked", never "invalid".
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for program in Path(folder).glob("*") if Path(folder).is_dir() else ():
            link = bin_dir / program.name
            if program.name != "xmllint" and not link.exists():
                link.symlink_to(program)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("LAB_LIBVIRT_URI", raising=False)
    nb = execute_chapter("chapters/hands_on/libvirt_lifecycle.md", timeout=120)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "validate_xml" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "検査できなかった" in text and "xmllint" in text
    assert "不合格" not in text
