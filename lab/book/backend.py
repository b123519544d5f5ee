"""A KVM back end in words: PVM as PVM, "入れ子" only for VT-x / AMD-V inside a VM.

A host's provenance says which KVM modules were loaded and whether the CPU
showed the ``hypervisor`` bit (``nested``). Only ``kvm_intel`` / ``kvm_amd``
inside a VM is nested virtualization; ``kvm_pvm`` is a KVM back end that uses
no hardware virtualization support at all, whether or not it runs in a VM.
"""

from __future__ import annotations

_HW = {"kvm_intel": "VT-x", "kvm_amd": "AMD-V"}


def backend_ja(kvm_modules: str, in_vm: bool) -> str:
    """``kvm_modules`` (e.g. "kvm kvm_pvm") and the hypervisor bit, as the book names the back end."""
    mods = set(str(kvm_modules).split())
    where = "VM の中" if in_vm else "ベアメタル"
    if "kvm_pvm" in mods:
        return f"KVM のバックエンド PVM(kvm_pvm、ハードウェア仮想化支援なし、{where})"
    for mod, hw in _HW.items():
        if mod in mods:
            return f"入れ子の KVM({mod}、VM の中の {hw})" if in_vm else f"ベアメタルの KVM({mod}、{hw})"
    return f"KVM(モジュール {kvm_modules or '不明'}、{where})"


def is_pvm(kvm_modules: str) -> bool:
    return "kvm_pvm" in str(kvm_modules).split()


def backend_short(kvm_modules: str, in_vm: bool) -> str:
    """The back end in a few characters, for table cells: PVM, 入れ子の VT-x, AMD-V, ..."""
    mods = set(str(kvm_modules).split())
    if "kvm_pvm" in mods:
        return "PVM"
    for mod, hw in _HW.items():
        if mod in mods:
            return f"入れ子の {hw}" if in_vm else hw
    return "KVM"
