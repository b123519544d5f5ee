"""A KVM back end in words: PVM as PVM, "入れ子" only for VT-x / AMD-V inside a VM.

A recording's provenance names its KVM back end (``kvm_backend``: ``kvm_intel``,
``kvm_amd``, ``kvm_pvm``, ...) and says whether the host kernel itself runs in
a VM (``runs_in_vm``, the ``hypervisor`` bit). Only ``kvm_intel`` / ``kvm_amd``
inside a VM is nested virtualization; ``kvm_pvm`` is a KVM back end that uses
no hardware virtualization support at all, whether or not it runs in a VM.
"""

from __future__ import annotations

_HW = {"kvm_intel": "VT-x", "kvm_amd": "AMD-V"}


def backend_ja(kvm_backend: str, runs_in_vm: bool) -> str:
    """The recorded back end (e.g. ``kvm_pvm``) and the hypervisor bit, as the book names them."""
    where = "VM の中" if runs_in_vm else "ベアメタル"
    if kvm_backend == "kvm_pvm":
        return f"KVM のバックエンド PVM(kvm_pvm、ハードウェア仮想化支援なし、{where})"
    if kvm_backend in _HW:
        hw = _HW[kvm_backend]
        if runs_in_vm:
            return f"入れ子の KVM({kvm_backend}、VM の中の {hw})"
        return f"ベアメタルの KVM({kvm_backend}、{hw})"
    if kvm_backend in ("", "none"):
        return f"KVM なし({where})"
    return f"KVM(バックエンド {kvm_backend}、{where})"


def is_pvm(kvm_backend: str) -> bool:
    return kvm_backend == "kvm_pvm"


def is_nested(kvm_backend: str, runs_in_vm: bool) -> bool:
    """Nested virtualization: a hardware back end (VT-x, AMD-V) whose host kernel itself runs in a VM."""
    return runs_in_vm and kvm_backend in _HW


def backend_short(kvm_backend: str, runs_in_vm: bool) -> str:
    """The back end in a few characters, for table cells: PVM, 入れ子の VT-x, AMD-V, ..."""
    if kvm_backend == "kvm_pvm":
        return "PVM"
    if kvm_backend in _HW:
        return f"入れ子の {_HW[kvm_backend]}" if runs_in_vm else _HW[kvm_backend]
    return "KVM"
