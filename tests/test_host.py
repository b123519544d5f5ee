"""The host probe: recorded /proc/cpuinfo texts, fake sysfs trees, the real machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab import host

CPUINFO = Path(__file__).parent / "data" / "cpuinfo"


@pytest.mark.parametrize(
    "name, vendor, model, virt_flags, hypervisor, cpus",
    [
        ("intel_vmx", "GenuineIntel", "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", ["vmx"], False, 2),
        ("amd_svm", "AuthenticAMD", "AMD Ryzen 9 5950X 16-Core Processor", ["svm"], False, 1),
        ("nested_no_flags", "AuthenticAMD", "AMD EPYC 7B13", [], True, 2),
        ("no_kvm", "GenuineIntel", "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", [], True, 1),
    ],
)
def test_parse_recorded_cpuinfo(name, vendor, model, virt_flags, hypervisor, cpus):
    cpu = host.read_cpuinfo(CPUINFO / f"{name}.txt")
    assert (cpu.vendor, cpu.model, cpu.virt_flags, cpu.hypervisor, cpu.logical_cpus) == (
        vendor, model, virt_flags, hypervisor, cpus)
    assert cpu.reason is None


def test_vendor_short_names():
    assert host.read_cpuinfo(CPUINFO / "intel_vmx.txt").vendor_short == "intel"
    assert host.read_cpuinfo(CPUINFO / "amd_svm.txt").vendor_short == "amd"


def test_cpuinfo_without_flags_or_file(tmp_path):
    (tmp_path / "arm.txt").write_text("processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\n")
    assert "not an x86" in host.read_cpuinfo(tmp_path / "arm.txt").reason
    assert host.parse_cpuinfo("").reason == "/proc/cpuinfo is empty"
    missing = host.read_cpuinfo(tmp_path / "nope")
    assert missing.vendor is None and "cannot read" in missing.reason


def test_flags_do_not_decide_kvm(tmp_path):
    """A CPU with vmx but no device is 'not usable'; the verdict never reads the flags."""
    info = host.probe_kvm(device=str(tmp_path / "kvm"), sys_module=str(tmp_path))
    assert not info.present and not info.usable
    assert "does not exist" in info.reason and "recorded data" in info.reason


def test_not_a_character_device(tmp_path):
    fake = tmp_path / "kvm"
    fake.write_text("")
    info = host.probe_kvm(device=str(fake), sys_module=str(tmp_path))
    assert info.present and not info.openable and not info.usable
    assert "not a character device" in info.reason


def test_backend_named_by_the_modules():
    assert host.kvm_backend_of(["kvm", "kvm_intel"]) == "kvm_intel"
    assert host.kvm_backend_of(["kvm", "kvm_pvm"]) == "kvm_pvm"
    assert host.kvm_backend_of(["kvm", "kvm_foo"]) == "kvm_foo"  # not known to the book, named as found
    assert host.kvm_backend_of(["kvm_foo", "kvm_amd"]) == "kvm_amd"  # a known back end wins
    assert host.kvm_backend_of(["kvm"]) == host.kvm_backend_of([]) == "none"


def test_kvm_modules_and_nested_parameter(tmp_path):
    (tmp_path / "kvm" / "parameters").mkdir(parents=True)
    (tmp_path / "kvm_intel" / "parameters").mkdir(parents=True)
    (tmp_path / "kvm_intel" / "parameters" / "nested").write_text("Y\n")
    (tmp_path / "ext4").mkdir()
    modules, reason = host.read_kvm_modules(tmp_path)
    assert reason is None
    assert [(m.name, m.nested) for m in modules] == [("kvm", None), ("kvm_intel", "Y")]
    assert "no 'nested' parameter" in modules[0].nested_reason


def test_no_kvm_module(tmp_path):
    (tmp_path / "ext4").mkdir()
    modules, reason = host.read_kvm_modules(tmp_path)
    assert modules == [] and "KVM is not loaded" in reason


def test_libvirt_test_driver_always_answers():
    info = host.probe_libvirt(("test:///default",))
    assert info.python_module, info.reason
    assert info.uris[0].ok and info.uris[0].driver.lower() == "test"


def test_libvirt_unreachable_uri_has_reason():
    info = host.probe_libvirt(("qemu+unix:///system?socket=/nonexistent/libvirt-sock",))
    assert not info.uris[0].ok
    assert "no libvirt daemon answers" in info.uris[0].reason


def test_json_is_stable():
    d = json.loads(host.probe().to_json())
    assert d["schema"] == host.PROBE_SCHEMA
    assert isinstance(d["kvm"]["usable"], bool)
    assert d["kvm"]["api_version"] is None or isinstance(d["kvm"]["api_version"], int)
    for key in ("vendor", "model", "virt_flags", "hypervisor"):
        assert key in d["cpu"]
    assert isinstance(d["cpu"]["virt_flags"], list)
    assert isinstance(d["cpu"]["hypervisor"], bool)
    assert d["runs_in_vm"] is d["cpu"]["hypervisor"]
    assert d["kvm"]["backend"] == host.kvm_backend_of(m["name"] for m in d["kvm"]["modules"])


def test_cli_report_names_the_verdict(tmp_path):
    from lab.__main__ import probe_text

    p = host.probe(device=str(tmp_path / "kvm"), libvirt_uris=())
    text = probe_text(p)
    assert "kvm" in text and "not usable" in text and "does not exist" in text


@pytest.mark.kvm
def test_real_machine_kvm_usable():
    """On this kind of machine KVM works although the CPU flags may not say so."""
    result = subprocess.run([sys.executable, "-m", "lab", "probe", "--json"],
                            capture_output=True, text=True, check=True)
    d = json.loads(result.stdout)
    assert d["kvm"]["usable"] is True and d["kvm"]["api_version"] == 12
    assert d["cpu"]["model"]
    print(f"probe: {d['cpu']['model']} virt_flags={d['cpu']['virt_flags']} hypervisor={d['cpu']['hypervisor']}")


NONROOT_USER = "labreader"


def _nonroot_ready() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return "needs Debian's /usr/bin/python3 (a pyenv Python under /root is not runnable by other users)"
    if not Path(host.KVM_DEVICE).exists():
        return f"{host.KVM_DEVICE} does not exist, nothing to be denied"
    return None


@pytest.mark.root
def test_nonroot_user_gets_not_usable_verdict(tmp_path_factory):
    """A user who cannot open /dev/kvm gets a verdict with a reason, not a traceback."""
    why = _nonroot_ready()
    if why:
        pytest.skip(why)
    if subprocess.run(["id", NONROOT_USER], capture_output=True).returncode != 0:
        useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin")
        subprocess.run([useradd, "--no-create-home", "--shell", "/usr/sbin/nologin", NONROOT_USER], check=True)
    # A world-readable copy of the package: the checkout may sit under /root (mode 700).
    place = tmp_path_factory.mktemp("nonroot")
    try:
        shutil.copytree(Path(host.__file__).parent, place / "lab",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for d in [place, *place.parents]:
            if d == Path(tempfile.gettempdir()).parent:
                break
            d.chmod(d.stat().st_mode | 0o755)
        subprocess.run(["chmod", "-R", "a+rX", str(place)], check=True)
        result = subprocess.run(
            ["/usr/bin/python3", "-m", "lab", "probe", "--json"],
            cwd=place, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            user=NONROOT_USER, group=NONROOT_USER, extra_groups=[],
        )
        assert result.returncode == 0, result.stderr
        d = json.loads(result.stdout)
        assert d["kvm"]["usable"] is False and d["kvm"]["openable"] is False
        assert "permission denied" in d["kvm"]["reason"]
        assert d["cpu"]["model"]
        print(f"non-root probe reason: {d['kvm']['reason']}")
    finally:
        shutil.rmtree(place, ignore_errors=True)
