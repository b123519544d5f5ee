"""Build a guest kit from Debian packages, cached by package versions; find a built one.

A kit is a folder ``<root>/<profile>-<key>/`` with ``vmlinuz`` (Debian's
kernel), ``initrd.img`` (a gzip'd newc cpio: busybox, the profile's modules,
``/init``) and ``kit.json`` (what went in: package versions, modules, sizes,
build time). ``<key>`` hashes the package versions and the profile, so a
security update of the kernel or a changed profile builds a new kit, and
building again with nothing changed does nothing.

Nothing is installed on the host: ``apt-get download`` fetches the ``.deb``
files into a temporary folder, ``dpkg-deb -x`` unpacks them there, and the
folder is removed. The kit root defaults to ``/var/cache/lab-guest-kit``
(override: ``LAB_GUEST_KIT_DIR``); kits are world-readable so that QEMU
started by libvirtd as its own user can read them (``/root`` is mode 700).

Command line: ``python -m lab kit build [--profile NAME]``,
``python -m lab kit status``.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.kit import cpio, modules
from lab.kit.profiles import PROFILES, Profile

ROOT_ENV = "LAB_GUEST_KIT_DIR"
DEFAULT_ROOT = Path("/var/cache/lab-guest-kit")
KERNEL_ENV = "LAB_GUEST_KERNEL_PACKAGE"
KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
MANIFEST = "kit.json"


class KitError(RuntimeError):
    """The kit cannot be built or is not built; the message says what to do."""


class KitMissing(KitError):
    pass


def build_command(profile: str) -> str:
    return f"python -m lab kit build --profile {profile}"


def kit_root(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass(frozen=True)
class Kit:
    """A built kit: its files and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kernel(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.path / "initrd.img"

    @property
    def cmdline(self) -> str:
        return str(self.manifest["cmdline"])

    @property
    def kernel_release(self) -> str:
        return str(self.manifest["kernel_release"])

    def describe(self) -> str:
        m = self.manifest
        kernel = f"{m['kernel_release']} ({m['packages'][m['kernel_package']]})"
        return (f"{m['profile']} kit {self.path}: kernel {kernel}, busybox {m['packages'][BUSYBOX]}, "
                f"{m['size_bytes'] / 1e6:.1f} MB, built in {m['build_seconds']:.0f} s")


# --------------------------------------------------------------------------- finding


def _load(path: Path) -> Kit | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kit = Kit(path, manifest)
    return kit if kit.kernel.is_file() and kit.initrd.is_file() else None


def built(profile: str, root: str | os.PathLike[str] | None = None) -> list[Kit]:
    """The complete kits of ``profile`` built from its current definition, newest first."""
    prof = _profile(profile)
    base = kit_root(root)
    kits = [k for p in sorted(base.glob(f"{prof.name}-*")) if (k := _load(p)) is not None
            and k.manifest.get("profile_digest") == prof.digest()]
    return sorted(kits, key=lambda k: k.manifest.get("built_at", ""), reverse=True)


def find(profile: str, root: str | os.PathLike[str] | None = None) -> Kit:
    """The newest built kit of ``profile``; :class:`KitMissing` (with the build command) if none.

    Never downloads or builds anything: a chapter calls this to decide whether it may run live.
    """
    kits = built(profile, root)
    if not kits:
        raise KitMissing(f"the guest kit {profile!r} is not built under {kit_root(root)}: build it once "
                         f"with '{build_command(profile)}' (about 75 MB download, ~10 MB kept)")
    return kits[0]


def _profile(name: str) -> Profile:
    if name not in PROFILES:
        raise KitError(f"unknown kit profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]


# --------------------------------------------------------------------------- package versions


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise KitError(f"{argv[0]} is not installed: the kit is built with Debian's apt tools") from None
    except subprocess.TimeoutExpired:
        raise KitError(f"{' '.join(argv)} took more than 10 minutes") from None
    if proc.returncode != 0:
        raise KitError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def candidate_version(package: str) -> str:
    out = _run(["apt-cache", "show", "--no-all-versions", package])
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise KitError(f"apt-cache knows no version of {package}; run 'apt-get update'")


def kernel_package() -> str:
    """``linux-image-<abi>-amd64``: the package the meta package ``linux-image-amd64`` depends on."""
    if os.environ.get(KERNEL_ENV):
        return os.environ[KERNEL_ENV]
    out = _run(["apt-cache", "depends", KERNEL_META])
    for line in out.splitlines():
        word = line.strip().split(":", 1)
        if word[0] == "Depends" and word[1].strip().startswith("linux-image-"):
            return word[1].strip()
    raise KitError(f"cannot tell which kernel package {KERNEL_META} names; set {KERNEL_ENV}")


def resolve(profile: Profile) -> tuple[str, dict[str, str]]:
    """The kernel package name and the candidate version of every package the kit needs."""
    kpkg = kernel_package()
    names = [kpkg, BUSYBOX, *profile.packages]
    return kpkg, {n: candidate_version(n) for n in names}


def kit_key(profile: Profile, versions: dict[str, str]) -> str:
    text = json.dumps({"profile": profile.digest(), "packages": versions}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- building


def _download(packages: dict[str, str], into: Path) -> dict[str, Path]:
    """``apt-get download pkg=version`` for each package; the .deb paths by package."""
    argv = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
            *[f"{p}={v}" for p, v in packages.items()]]
    if os.geteuid() != 0:
        argv = [a for a in argv if a not in ("-o", "APT::Sandbox::User=root")]
    _run(argv, cwd=into)
    debs = {}
    for p in packages:
        found = sorted(into.glob(f"{p}_*.deb"))
        if not found:
            raise KitError(f"apt-get download left no .deb for {p}")
        debs[p] = found[0]
    return debs


def _extract(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(into)])
    return into


def _compile(tree: Path, folders: tuple[str, ...]) -> None:
    """Byte-compile ``folders`` of an unpacked package as the guest will find them (``/<folder>``).

    ``unchecked-hash`` .pyc files are used without looking at the source's
    mtime (an initramfs has none worth trusting). The .pyc format is fixed
    within a minor version, so the Python running this must be the guest's.
    """
    want = next((f.rsplit("python", 1)[1] for f in folders if "python3." in f), None)
    if want and want != f"{sys.version_info[0]}.{sys.version_info[1]}":
        raise KitError(f"the kit byte-compiles Python {want} files; run the build with Python {want}, "
                       f"not {sys.version.split()[0]}")
    for folder in folders:
        if (tree / folder).is_dir():
            compileall.compile_dir(tree / folder, ddir="/" + folder, quiet=2, workers=0,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def _entries(tree_files: dict[str, tuple[bytes, bool]], profile: Profile,
             order: list[modules.Module], links: dict[str, str]) -> list[cpio.Entry]:
    dirs = set(profile.extra_dirs) | {"lib", "lib/modules"}
    for name in [*tree_files, *links]:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    entries = [cpio.directory(d) for d in sorted(dirs)]
    entries.append(cpio.char_device("dev/console", 5, 1))
    entries.append(cpio.char_device("dev/null", 1, 3))
    for name, (data, executable) in sorted(tree_files.items()):
        entries.append(cpio.file(name, data, executable))
    for name, target in sorted(links.items()):
        entries.append(cpio.symlink(name, target))
    entries.append(cpio.file("etc/modules", "".join(m.name + "\n" for m in order).encode()))
    entries.append(cpio.file("init", profile.init_script().encode(), executable=True))
    return entries


def _assemble(profile: Profile, debs: dict[str, Path], kpkg: str, work: Path) -> tuple[dict[str, Any], bytes, Path]:
    """The manifest fields, the initramfs and the kernel image from the unpacked packages."""
    ktree = _extract(debs[kpkg], work / "kernel")
    releases = sorted(p.name for p in (ktree / "lib/modules").iterdir())
    if len(releases) != 1:
        raise KitError(f"{kpkg} holds {len(releases)} module trees, expected one")
    release = releases[0]
    order = modules.load_order(list(profile.modules), modules.index(ktree / "lib/modules" / release))
    strip = modules.strip_signature if profile.strip_signatures else bytes
    files: dict[str, tuple[bytes, bool]] = {
        f"lib/modules/{m.name}.ko": (strip(m.path.read_bytes()), False) for m in order}
    bb = _extract(debs[BUSYBOX], work / "busybox") / "bin/busybox"
    files["bin/busybox"] = (bb.read_bytes(), True)
    links: dict[str, str] = {}
    for pkg in profile.packages:
        tree = _extract(debs[pkg], work / pkg)
        _compile(tree, profile.compile_python)
        for pattern in profile.include:
            for path in tree.glob(pattern):
                name = str(path.relative_to(tree))
                if path.is_symlink():  # e.g. a library's soname link: kept as a link
                    links[name] = os.readlink(path)
                elif path.is_file():
                    files[name] = (path.read_bytes(), os.access(path, os.X_OK))
    initrd = cpio.pack_gzip(_entries(files, profile, order, links))
    fields = {"kernel_release": release, "modules": [m.name for m in order]}
    return fields, initrd, ktree / "boot" / f"vmlinuz-{release}"


def build(profile_name: str = "disk-trap", root: str | os.PathLike[str] | None = None, *,
          force: bool = False, log: Callable[[str], None] = lambda s: None) -> tuple[Kit, bool]:
    """Build the kit of ``profile_name`` unless the same one is built; ``(kit, built_now)``.

    Needs ``apt-get`` with package lists (the network for the download) and
    ``dpkg-deb``. Older kits of the same profile are removed after a new one
    is in place. A failure leaves no half-built kit (it is built in a
    temporary folder and renamed into place).
    """
    profile = _profile(profile_name)
    kpkg, versions = resolve(profile)
    base = kit_root(root)
    target = base / f"{profile.name}-{kit_key(profile, versions)}"
    if not force and (kit := _load(target)) is not None:
        return kit, False
    try:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
    except OSError as exc:
        raise KitError(f"cannot create the kit folder {base}: {exc.strerror}; set {ROOT_ENV} "
                       f"to a folder you can write and the QEMU user can read") from None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=base) as tmp:
        work = Path(tmp)
        log(f"downloading {', '.join(f'{p}={v}' for p, v in versions.items())}")
        debs = _download(versions, work)
        download_bytes = sum(d.stat().st_size for d in debs.values())
        log("unpacking and packing the initramfs")
        fields, initrd, vmlinuz = _assemble(profile, debs, kpkg, work)
        out = work / "kit"
        out.mkdir()
        shutil.copyfile(vmlinuz, out / "vmlinuz")
        (out / "initrd.img").write_bytes(initrd)
        size = sum(p.stat().st_size for p in out.iterdir())
        manifest = {
            "profile": profile.name, "profile_digest": profile.digest(), "description": profile.description,
            "kernel_package": kpkg, "packages": versions, **fields, "cmdline": profile.cmdline,
            "size_bytes": size, "initrd_bytes": len(initrd), "download_bytes": download_bytes,
            "build_seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in out.iterdir():
            p.chmod(0o644)
        out.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    for old in built(profile.name, base):
        if old.path != target:
            shutil.rmtree(old.path, ignore_errors=True)
    return Kit(target, manifest), True
