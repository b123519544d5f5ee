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
import errno
import fcntl
import hashlib
import json
import os
import platform
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import __version__
from lab.devnode import DeviceAccess, device_access
from lab.kvm.ioctl_numbers import KVM_API_VERSION, KVM_CREATE_VM, KVM_GET_API_VERSION

#: Schema name of :meth:`Probe.as_dict`; bump it when a field changes meaning.
PROBE_SCHEMA = "lab.probe/1"

KVM_DEVICE = "/dev/kvm"
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
    logical = sum(1 for b in blocks if any(l.startswith("processor") for l in b.splitlines()))
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


#: KVM's back ends: which module drives the guests (Japanese: shown to readers).
KVM_BACKENDS = {
    "kvm_intel": "Intel VT-x を使うバックエンド",
    "kvm_amd": "AMD-V (SVM) を使うバックエンド",
    "kvm_pvm": (
        "PVM (Pagetable-based Virtual Machine): ハードウェア仮想化支援を使わず、"
        "ページテーブルの切り替えでゲストを動かすバックエンド。入れ子の仮想化を許さないクラウドの VM の中でも KVM が使える"
    ),
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
    def backend(self) -> str | None:
        """The loaded back-end module (kvm_intel, kvm_amd, kvm_pvm), if any is known."""
        return next((m.name for m in self.modules if m.backend), None)


def _open_reason(device: str, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        try:
            st = os.stat(device)
            mode = stat.filemode(st.st_mode)
            owner = f"{mode}, owner uid {st.st_uid}, group gid {st.st_gid}"
        except OSError:
            owner = "mode unknown"
        return (
            f"permission denied opening {device} ({owner}) as uid {os.getuid()}: "
            f"add this user to the device's group (usually 'kvm': "
            f"sudo usermod -aG kvm $USER, then log in again) or run as root"
        )
    if exc.errno in (errno.ENXIO, errno.ENODEV):
        return (
            f"{device} exists but no KVM driver answers ({exc.strerror}): "
            f"load kvm_intel or kvm_amd (modprobe) or enable virtualization in the firmware"
        )
    return f"cannot open {device}: {exc.strerror} (errno {exc.errno})"


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
    """Open ``device``, ask its API version and create one empty VM."""
    modules, modules_reason = read_kvm_modules(sys_module)

    def verdict(**kw: Any) -> KvmInfo:
        base = dict(device=device, present=True, openable=False, api_version=None,
                    create_vm=False, usable=False, reason=None,
                    modules=modules, modules_reason=modules_reason, access=device_access(device))
        base.update(kw)
        return KvmInfo(**base)

    if not os.path.exists(device):
        return verdict(
            present=False,
            reason=(
                f"{device} does not exist: this machine (a Binder session, a container "
                f"started without --device {device}, a VM without nested virtualization) "
                f"offers no KVM; the book shows recorded data instead"
            ),
        )
    if not stat.S_ISCHR(os.stat(device).st_mode):
        return verdict(reason=f"{device} is not a character device")
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return verdict(reason=_open_reason(device, exc))
    try:
        try:
            api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        except OSError as exc:
            return verdict(openable=True, reason=f"KVM_GET_API_VERSION failed: {exc.strerror}")
        if api != KVM_API_VERSION:
            return verdict(
                openable=True, api_version=api,
                reason=f"KVM API version {api}, this book speaks version {KVM_API_VERSION}",
            )
        try:
            vm_fd = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        except OSError as exc:
            return verdict(
                openable=True, api_version=api,
                reason=f"KVM_CREATE_VM failed: {exc.strerror} (errno {exc.errno})",
            )
        os.close(vm_fd)
        return verdict(openable=True, api_version=api, create_vm=True, usable=True)
    finally:
        os.close(fd)


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


def _format_version(v: int) -> str:
    return f"{v // 1_000_000}.{(v // 1000) % 1000}.{v % 1000}"


def probe_libvirt(uris: tuple[str, ...] | None = None) -> LibvirtInfo:
    """Import libvirt-python and try each URI read-only."""
    if uris is None:
        extra = os.environ.get(LIBVIRT_URI_ENV)
        uris = DEFAULT_LIBVIRT_URIS + ((extra,) if extra and extra not in DEFAULT_LIBVIRT_URIS else ())
    try:
        import libvirt  # type: ignore[import-not-found]
    except ImportError as exc:
        return LibvirtInfo(
            False, None, [],
            reason=f"libvirt-python is not installed ({exc}): run 'make setup' (needs libvirt-dev and pkg-config)",
        )
    # libvirt prints every error to stderr by default; the caller gets them as reasons.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    results = []
    for uri in uris:
        try:
            conn = libvirt.openReadOnly(uri)
        except libvirt.libvirtError as exc:
            results.append(LibvirtUri(uri, False, reason=_libvirt_reason(uri, exc)))
            continue
        try:
            results.append(LibvirtUri(uri, True, driver=conn.getType(),
                                      version=_format_version(conn.getLibVersion())))
        finally:
            conn.close()
    return LibvirtInfo(True, _format_version(libvirt.getVersion()), results)


def _libvirt_reason(uri: str, exc: Exception) -> str:
    message = str(exc).strip()
    if "No such file or directory" in message or "Connection refused" in message:
        return f"no libvirt daemon answers for {uri} ({message}): start libvirtd (see README)"
    if "Permission denied" in message:
        return f"permission denied for {uri} ({message}): join the 'libvirt' group or use qemu:///session"
    return message


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
    def nested(self) -> bool:
        """True when this kernel runs inside a VM, so KVM here is nested."""
        return self.cpu.hypervisor

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cpu"]["vendor_short"] = self.cpu.vendor_short
        d["kvm"]["backend"] = self.kvm.backend
        return {"schema": PROBE_SCHEMA, **d, "nested": self.nested}

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


# --------------------------------------------------------------------------- presentation


def _yes(value: bool) -> str:
    return "はい" if value else "いいえ"


def report_rows(p: Probe) -> list[tuple[str, str, str]]:
    """(item, value, meaning) rows in Japanese, for the hands-on chapter and the CLI."""
    k, c, lv = p.kvm, p.cpu, p.libvirt
    rows = [
        ("CPU", f"{c.model or '?'} ({c.vendor or '?'})", c.reason or "/proc/cpuinfo の最初のプロセッサ"),
        ("vmx / svm フラグ", ", ".join(c.virt_flags) or "なし",
         "CPU が見せているハードウェア仮想化支援。入れ子の仮想マシンでは見えなくても KVM が動くことがある"),
        ("hypervisor ビット", _yes(c.hypervisor),
         "はい = このカーネル自身が仮想マシンの中で動いている(KVM は入れ子になる)"),
        (KVM_DEVICE, _yes(k.present), k.reason if not k.present else "デバイスファイルがある"),
        ("open できるか", _yes(k.openable), k.reason if k.present and not k.openable else "読み書きで開けた"),
        ("KVM API バージョン", str(k.api_version) if k.api_version is not None else "-",
         "KVM_GET_API_VERSION の答え。12 以外は想定外"),
        ("KVM_CREATE_VM", _yes(k.create_vm), "空の VM を作って閉じられたか"),
        *_access_rows(k.access),
        ("KVM の判定", "使える" if k.usable else "使えない", k.reason or "実際に開いて VM を作れた"),
    ]
    for m in k.modules:
        meaning = m.backend or ""
        if m.nested is not None:
            meaning += ("。" if meaning else "") + "nested=Y/1 なら、この上のゲストの中でも KVM が使える"
        rows.append((f"モジュール {m.name}", f"nested={m.nested}" if m.nested is not None else "ロード済み",
                     meaning or m.nested_reason or ""))
    if not k.modules:
        rows.append(("kvm モジュール", "なし", k.modules_reason or ""))
    if not lv.python_module:
        rows.append(("libvirt-python", "なし", lv.reason or ""))
    else:
        rows.append(("libvirt-python", lv.library_version or "?", "libvirt ライブラリのバージョン"))
        for u in lv.uris:
            rows.append((f"libvirt {u.uri}", f"応答あり ({u.driver} {u.version})" if u.ok else "応答なし",
                         u.reason or "読み取り専用で接続できた"))
    return rows


def _access_rows(a: DeviceAccess | None) -> list[tuple[str, str, str]]:
    if a is None:
        return []
    rows = [(f"{a.device} の所有者とモード", f"{a.owner}:{a.group} {a.mode}",
             "Debian の udev 規則なら root:kvm crw-rw----(グループ kvm が開ける)")]
    if a.qemu_can_open is not None:
        meaning = ("libvirtd が QEMU を動かすユーザー。開けないと QEMU は "
                   "「Could not access KVM kernel module: Permission denied」で止まる")
        if a.fix:
            meaning += f"。直し方(root で、Debian の udev 規則を手で当てる): {a.fix}"
        rows.append((f"QEMU ({a.qemu_user}:{a.qemu_group}) が開けるか", _yes(a.qemu_can_open), meaning))
    return rows


def report_frame(p: Probe):
    """The report as a pandas DataFrame (imported lazily: the probe needs only the stdlib)."""
    import pandas as pd

    return pd.DataFrame(report_rows(p), columns=["項目", "値", "意味"])


def report_table(p: Probe):
    """The report styled for a notebook: no index column, left-aligned text."""
    return (
        report_frame(p)
        .style.hide(axis="index")
        .set_properties(**{"text-align": "left"})
        .set_table_attributes('class="dataframe"')
    )


def report_text(p: Probe) -> str:
    rows = report_rows(p)
    width = max(len(r[0]) for r in rows)
    lines = [f"host {p.host_id}  kernel {p.kernel}  lab {p.lab_version}"]
    lines += [f"{item:<{width}}  {value}  -- {meaning}" for item, value, meaning in rows]
    return "\n".join(lines)
