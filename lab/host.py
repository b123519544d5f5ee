"""What this machine offers the book: KVM, the CPU, kernel modules, libvirt.

The KVM verdict comes from really opening ``/dev/kvm``, asking
``KVM_GET_API_VERSION`` and creating (then closing) an empty VM: CPU flags are
shown, never trusted. On a nested or paravirtualised host (the machines this
book was written on) ``/proc/cpuinfo`` may show neither ``vmx`` nor ``svm``
while KVM works perfectly well.

Only the standard library is needed; libvirt-python is optional. Every
negative field carries a ``reason`` that says why and what to do.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import __version__, kvm
from lab.devnode import DeviceAccess, device_access

#: Schema name of :meth:`Probe.as_dict`; bump it when a field changes meaning.
PROBE_SCHEMA = "lab.probe/2"

KVM_DEVICE = kvm.DEVICE
VIRT_FLAGS = ("vmx", "svm")
DEFAULT_LIBVIRT_URIS = ("test:///default", "qemu:///system")
LIBVIRT_URI_ENV = "LAB_LIBVIRT_URI"

_VENDORS = {
    "GenuineIntel": "intel",
    "AuthenticAMD": "amd",
    "HygonGenuine": "hygon",
    "CentaurHauls": "centaur",
}


# --------------------------------------------------------------------------- CPU


@dataclass(frozen=True)
class CpuInfo:
    """The first processor of ``/proc/cpuinfo``, reduced to what the book needs."""

    vendor: str | None
    model: str | None
    virt_flags: list[str]
    hypervisor: bool
    logical_cpus: int
    reason: str | None = None

    @property
    def vendor_short(self) -> str:
        return _VENDORS.get(self.vendor or "", "unknown")


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of ``/proc/cpuinfo`` (x86 layout).

    ``virt_flags`` lists ``vmx`` (Intel VT-x) or ``svm`` (AMD-V) when the CPU
    exposes them; ``hypervisor`` is the CPUID bit a hypervisor sets for its
    guests, so it says this kernel itself runs inside a virtual machine.
    """
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if not blocks:
        return CpuInfo(None, None, [], False, 0, reason="/proc/cpuinfo is empty")
    first: dict[str, str] = {}
    for line in blocks[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            first.setdefault(key.strip(), value.strip())
    flags = first.get("flags", "").split()
    logical = sum(1 for b in blocks if any(line.startswith("processor") for line in b.splitlines()))
    reason = None if "flags" in first else "no 'flags' line: not an x86 /proc/cpuinfo"
    return CpuInfo(
        vendor=first.get("vendor_id"),
        model=first.get("model name"),
        virt_flags=[f for f in VIRT_FLAGS if f in flags],
        hypervisor="hypervisor" in flags,
        logical_cpus=logical,
        reason=reason,
    )


def read_cpuinfo(path: str | os.PathLike[str] = "/proc/cpuinfo") -> CpuInfo:
    try:
        return parse_cpuinfo(Path(path).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        return CpuInfo(None, None, [], False, 0, reason=f"cannot read {path}: {exc.strerror}")


# --------------------------------------------------------------------------- KVM


#: KVM's back ends: which module drives the guests (the book says it in Japanese: lab.book.host).
KVM_BACKENDS = {
    "kvm_intel": "Intel VT-x",
    "kvm_amd": "AMD-V (SVM)",
    "kvm_pvm": "PVM (Pagetable-based Virtual Machine): no hardware virtualization, shadow page tables",
}


@dataclass(frozen=True)
class KvmModule:
    """A loaded kernel module whose name starts with ``kvm``."""

    name: str
    nested: str | None
    nested_reason: str | None = None

    @property
    def backend(self) -> str | None:
        """What this module is, when it is one of KVM's known back ends."""
        return KVM_BACKENDS.get(self.name)


#: The value of ``kvm_backend`` when no kvm module is loaded.
NO_BACKEND = "none"


def kvm_backend_of(module_names: Iterable[str]) -> str:
    """The KVM back end that the loaded kvm* modules name, as recorded in provenance.

    A known back end (``kvm_intel``, ``kvm_amd``, ``kvm_pvm``) when one is loaded; otherwise
    the first other ``kvm_*`` module (a back end this book does not know yet, by its name);
    otherwise ``none``.
    """
    names = [n for n in module_names if n]
    known = [n for n in names if n in KVM_BACKENDS]
    other = [n for n in names if n.startswith("kvm_")]
    return (known or other or [NO_BACKEND])[0]


@dataclass(frozen=True)
class KvmInfo:
    device: str
    present: bool
    openable: bool
    api_version: int | None
    create_vm: bool
    usable: bool
    reason: str | None
    modules: list[KvmModule] = field(default_factory=list)
    modules_reason: str | None = None
    #: owner, group, mode, and whether libvirt's QEMU user can open the device
    access: DeviceAccess | None = None

    @property
    def backend(self) -> str:
        """The loaded back-end module (kvm_intel, kvm_amd, kvm_pvm, ...): :func:`kvm_backend_of`."""
        return kvm_backend_of(m.name for m in self.modules)


def read_kvm_modules(sys_module: str | os.PathLike[str] = "/sys/module") -> tuple[list[KvmModule], str | None]:
    """The kvm* modules the kernel knows, with their ``nested`` parameter."""
    root = Path(sys_module)
    try:
        names = sorted(p.name for p in root.iterdir() if p.name.startswith("kvm"))
    except OSError as exc:
        return [], f"cannot list {root}: {exc.strerror}"
    if not names:
        return [], f"no kvm module in {root}: KVM is not loaded (modprobe kvm_intel or kvm_amd)"
    modules = []
    for name in names:
        param = root / name / "parameters" / "nested"
        try:
            modules.append(KvmModule(name, param.read_text().strip()))
        except FileNotFoundError:
            modules.append(KvmModule(name, None, f"module {name} has no 'nested' parameter"))
        except OSError as exc:
            modules.append(KvmModule(name, None, f"cannot read {param}: {exc.strerror}"))
    return modules, None


def probe_kvm(device: str = KVM_DEVICE, sys_module: str = "/sys/module") -> KvmInfo:
    """Open ``device`` with :func:`lab.kvm.open` (which checks the API version) and create one empty VM."""
    modules, modules_reason = read_kvm_modules(sys_module)
    info = functools.partial(KvmInfo, device=device, present=os.path.exists(device), openable=False,
                             api_version=None, create_vm=False, usable=False, modules=modules,
                             modules_reason=modules_reason, access=device_access(device))
    if info.keywords["present"] and not stat.S_ISCHR(os.stat(device).st_mode):
        return info(reason=f"{device} is not a character device")
    try:
        system = kvm.open(device)
    except kvm.KvmUnavailable as exc:
        return info(reason=str(exc))
    with system:
        api = system.api_version()
        try:
            system.create_vm().close()
        except OSError as exc:
            return info(openable=True, api_version=api,
                        reason=f"KVM_CREATE_VM failed: {exc.strerror} (errno {exc.errno})")
    return info(openable=True, api_version=api, create_vm=True, usable=True, reason=None)


# --------------------------------------------------------------------------- libvirt


@dataclass(frozen=True)
class LibvirtUri:
    uri: str
    ok: bool
    driver: str | None = None
    version: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LibvirtInfo:
    python_module: bool
    library_version: str | None
    uris: list[LibvirtUri]
    reason: str | None = None


# libvirt's numeric error codes a connection may fail with (virErrorNumber in virterror.h); named
# here so that the probe needs no libvirt-python. lab.virt.errors names the others.
VIR_ERR_NO_CONNECT = 5
VIR_ERR_AUTH_FAILED = 45
VIR_ERR_ACCESS_DENIED = 88
VIR_ERR_AUTH_UNAVAILABLE = 94

LIBVIRT_DAEMON_HINT = (
    "start the daemons: 'sudo tools/libvirt-daemons.sh' on a machine without systemd, "
    "'sudo systemctl start libvirtd' elsewhere; or use test:///default (no daemon)"
)
LIBVIRT_PERMISSION_HINT = (
    "join the 'libvirt' group (sudo usermod -aG libvirt $USER, then log in again), "
    "or use qemu:///session (your own unprivileged daemon) or test:///default"
)
LIBVIRT_POLKIT_HINT = (
    "the daemon runs, but it authorizes a non-root user through polkit on the D-Bus system bus, and that "
    "is not available here (no systemd/dbus): run as root, or use qemu:///session or test:///default"
)


def format_libvirt_version(v: int) -> str:
    """libvirt's version number (major * 1,000,000 + minor * 1,000 + release) as ``major.minor.release``."""
    return f"{v // 1_000_000}.{(v // 1000) % 1000}.{v % 1000}"


def libvirt_connect_failure(code: int | None, message: str) -> tuple[str, str]:
    """Why a libvirt connection failed: ``("permission" | "daemon" | "other", what to do)``."""
    lower = (message or "").lower()
    if "system bus" in lower or "polkit" in lower:
        return "permission", LIBVIRT_POLKIT_HINT
    if code in (VIR_ERR_AUTH_FAILED, VIR_ERR_AUTH_UNAVAILABLE, VIR_ERR_ACCESS_DENIED) \
            or "permission denied" in lower or "authentication" in lower:
        return "permission", LIBVIRT_PERMISSION_HINT
    if "no such file or directory" in lower or "connection refused" in lower \
            or "failed to connect socket" in lower or code == VIR_ERR_NO_CONNECT:
        return "daemon", LIBVIRT_DAEMON_HINT
    return "other", "check the URI (e.g. qemu:///system, qemu:///session, test:///default)"


LIBVIRT_INSTALL_HINT = "run 'make setup' (pip install libvirt-python; it compiles against libvirt-dev with pkg-config)"


def import_libvirt() -> Any:
    """The ``libvirt`` module with its default error printer silenced; ``ImportError`` without libvirt-python.

    By default libvirt prints every error to stderr (and a notebook cell that
    writes to stderr fails the book build); the errors reach callers as exceptions.
    """
    import libvirt  # type: ignore[import-not-found]

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def probe_libvirt(uris: tuple[str, ...] | None = None) -> LibvirtInfo:
    """Import libvirt-python and try each URI read-only."""
    if uris is None:
        extra = os.environ.get(LIBVIRT_URI_ENV)
        uris = DEFAULT_LIBVIRT_URIS + ((extra,) if extra and extra not in DEFAULT_LIBVIRT_URIS else ())
    try:
        libvirt = import_libvirt()
    except ImportError as exc:
        return LibvirtInfo(False, None, [], reason=f"libvirt-python is not installed ({exc}): {LIBVIRT_INSTALL_HINT}")
    results = []
    for uri in uris:
        try:
            conn = libvirt.openReadOnly(uri)
        except libvirt.libvirtError as exc:
            results.append(LibvirtUri(uri, False, reason=_libvirt_reason(uri, exc.get_error_code(), str(exc))))
            continue
        try:
            results.append(LibvirtUri(uri, True, driver=conn.getType(),
                                      version=format_libvirt_version(conn.getLibVersion())))
        finally:
            conn.close()
    return LibvirtInfo(True, format_libvirt_version(libvirt.getVersion()), results)


def _libvirt_reason(uri: str, code: int | None, message: str) -> str:
    kind, hint = libvirt_connect_failure(code, message)
    what = {"daemon": "no libvirt daemon answers", "permission": "permission denied"}.get(kind, "cannot connect")
    return f"{what} for {uri} ({message.strip()}): {hint}"


# --------------------------------------------------------------------------- whole host


@dataclass(frozen=True)
class Probe:
    """Everything :func:`probe` found, with :meth:`as_dict` as the stable JSON form."""

    host_id: str
    kernel: str
    machine: str
    python: str
    lab_version: str
    cpu: CpuInfo
    kvm: KvmInfo
    libvirt: LibvirtInfo

    @property
    def runs_in_vm(self) -> bool:
        """True when this kernel runs inside a VM (the hypervisor bit).

        KVM here is nested only when its back end uses the hardware (kvm_intel,
        kvm_amd); a PVM back end (kvm_pvm) inside a VM is not nested virtualization.
        """
        return self.cpu.hypervisor

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cpu"]["vendor_short"] = self.cpu.vendor_short
        d["kvm"]["backend"] = self.kvm.backend
        return {"schema": PROBE_SCHEMA, **d, "runs_in_vm": self.runs_in_vm}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)


def host_id(cpu: CpuInfo, machine_id_path: str = "/etc/machine-id") -> str:
    """An anonymised, stable name for this host: vendor plus a short hash.

    The hash covers ``/etc/machine-id`` (or the host name when there is none)
    and the CPU model, so it names a machine without revealing either.
    """
    try:
        seed = Path(machine_id_path).read_text().strip()
    except OSError:
        seed = platform.node()
    digest = hashlib.sha256(f"{seed}|{cpu.model}".encode()).hexdigest()[:8]
    return f"{cpu.vendor_short}-{digest}"


def probe(*, device: str = KVM_DEVICE, cpuinfo: str = "/proc/cpuinfo",
          libvirt_uris: tuple[str, ...] | None = None) -> Probe:
    cpu = read_cpuinfo(cpuinfo)
    return Probe(
        host_id=host_id(cpu),
        kernel=platform.release(),
        machine=platform.machine(),
        python=platform.python_version(),
        lab_version=__version__,
        cpu=cpu,
        kvm=probe_kvm(device),
        libvirt=probe_libvirt(libvirt_uris),
    )
