"""ctypes mirrors of the <linux/kvm.h> structures the mini VMM passes to the kernel.

Each class copies the kernel's field order and types; ctypes applies the same
natural alignment as the C compiler on x86-64, so sizes and offsets match the
kernel ABI. ``tests/test_kvm_abi.py`` compiles a C program against the real
header and compares every size and offset listed in :data:`CHECKED_FIELDS`.
"""

from __future__ import annotations

import ctypes
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64


class kvm_userspace_memory_region(ctypes.Structure):
    """One guest-physical memory slot backed by host memory (KVM_SET_USER_MEMORY_REGION)."""

    _fields_ = [
        ("slot", c_uint32),
        ("flags", c_uint32),
        ("guest_phys_addr", c_uint64),
        ("memory_size", c_uint64),  # bytes; 0 deletes the slot
        ("userspace_addr", c_uint64),  # host virtual address of the backing memory
    ]


class kvm_regs(ctypes.Structure):
    """General-purpose registers (KVM_GET_REGS / KVM_SET_REGS)."""

    _fields_ = [(name, c_uint64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "rip", "rflags",
    )]


class kvm_segment(ctypes.Structure):
    """A segment register as the hardware caches it (base, limit, attributes)."""

    _fields_ = [
        ("base", c_uint64),
        ("limit", c_uint32),
        ("selector", c_uint16),
        ("type", c_uint8),
        ("present", c_uint8),
        ("dpl", c_uint8),
        ("db", c_uint8),
        ("s", c_uint8),
        ("l", c_uint8),
        ("g", c_uint8),
        ("avl", c_uint8),
        ("unusable", c_uint8),
        ("padding", c_uint8),
    ]


class kvm_dtable(ctypes.Structure):
    """GDTR / IDTR."""

    _fields_ = [("base", c_uint64), ("limit", c_uint16), ("padding", c_uint16 * 3)]


KVM_NR_INTERRUPTS = 256


class kvm_sregs(ctypes.Structure):
    """Special registers: segments, descriptor tables, control registers, EFER."""

    _fields_ = [
        ("cs", kvm_segment), ("ds", kvm_segment), ("es", kvm_segment), ("fs", kvm_segment),
        ("gs", kvm_segment), ("ss", kvm_segment), ("tr", kvm_segment), ("ldt", kvm_segment),
        ("gdt", kvm_dtable), ("idt", kvm_dtable),
        ("cr0", c_uint64), ("cr2", c_uint64), ("cr3", c_uint64), ("cr4", c_uint64),
        ("cr8", c_uint64), ("efer", c_uint64), ("apic_base", c_uint64),
        ("interrupt_bitmap", c_uint64 * ((KVM_NR_INTERRUPTS + 63) // 64)),
    ]


class kvm_ioeventfd(ctypes.Structure):
    """Bind a guest port or address to an eventfd (KVM_IOEVENTFD)."""

    _fields_ = [
        ("datamatch", c_uint64),
        ("addr", c_uint64),
        ("len", c_uint32),
        ("fd", c_int32),
        ("flags", c_uint32),
        ("pad", c_uint8 * 36),
    ]


class kvm_signal_mask(ctypes.Structure):
    """Header of KVM_SET_SIGNAL_MASK; the sigset bytes follow it (flexible array)."""

    _fields_ = [("len", c_uint32)]


class kvm_cpuid_entry2(ctypes.Structure):
    """One CPUID leaf as the guest will see it."""

    _fields_ = [("function", c_uint32), ("index", c_uint32), ("flags", c_uint32),
                ("eax", c_uint32), ("ebx", c_uint32), ("ecx", c_uint32), ("edx", c_uint32),
                ("padding", c_uint32 * 3)]


class kvm_cpuid2(ctypes.Structure):
    """Header of KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2; ``nent`` entries follow it."""

    _fields_ = [("nent", c_uint32), ("padding", c_uint32)]


def cpuid2_with(n: int) -> type[ctypes.Structure]:
    """A ctypes type for a kvm_cpuid2 header followed by ``n`` entries."""
    return type(f"kvm_cpuid2_{n}", (ctypes.Structure,),
                {"_fields_": [("nent", c_uint32), ("padding", c_uint32), ("entries", kvm_cpuid_entry2 * n)]})


# --------------------------------------------------------------------------- struct kvm_run


class _run_hw(ctypes.Structure):
    _fields_ = [("hardware_exit_reason", c_uint64)]


class _run_fail_entry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", c_uint64), ("cpu", c_uint32)]


class _run_ex(ctypes.Structure):
    _fields_ = [("exception", c_uint32), ("error_code", c_uint32)]


class _run_io(ctypes.Structure):
    _fields_ = [
        ("direction", c_uint8),  # KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT
        ("size", c_uint8),  # bytes per access: 1, 2 or 4
        ("port", c_uint16),
        ("count", c_uint32),  # >1 for rep ins/outs
        ("data_offset", c_uint64),  # offset of the data from the start of kvm_run
    ]


class _run_mmio(ctypes.Structure):
    _fields_ = [("phys_addr", c_uint64), ("data", c_uint8 * 8), ("len", c_uint32), ("is_write", c_uint8)]


class _run_internal(ctypes.Structure):
    _fields_ = [("suberror", c_uint32), ("ndata", c_uint32), ("data", c_uint64 * 16)]


class _run_exit_union(ctypes.Union):
    _fields_ = [
        ("hw", _run_hw),
        ("fail_entry", _run_fail_entry),
        ("ex", _run_ex),
        ("io", _run_io),
        ("mmio", _run_mmio),
        ("internal", _run_internal),
        ("padding", ctypes.c_char * 256),
    ]


class kvm_run(ctypes.Structure):
    """The head of the shared ``kvm_run`` page, up to and including the exit union.

    The kernel's page is larger (``KVM_GET_VCPU_MMAP_SIZE``); the mini VMM maps
    all of it and overlays this structure on its start.
    """

    _fields_ = [
        ("request_interrupt_window", c_uint8),
        ("immediate_exit", c_uint8),
        ("padding1", c_uint8 * 6),
        ("exit_reason", c_uint32),
        ("ready_for_interrupt_injection", c_uint8),
        ("if_flag", c_uint8),
        ("flags", c_uint16),
        ("cr8", c_uint64),
        ("apic_base", c_uint64),
        ("u", _run_exit_union),
    ]


#: (C expression of the struct, Python struct, [(C field path, Python offset expr)]) checked by the ABI test.
def _off(struct: type[ctypes.Structure], *path: str) -> int:
    offset, cls = 0, struct
    for name in path:
        field = getattr(cls, name)
        offset += field.offset
        cls = {f[0]: f[1] for f in cls._fields_}[name]  # type: ignore[assignment]
    return offset


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "kvm_userspace_memory_region": kvm_userspace_memory_region,
    "kvm_regs": kvm_regs,
    "kvm_segment": kvm_segment,
    "kvm_dtable": kvm_dtable,
    "kvm_sregs": kvm_sregs,
    "kvm_ioeventfd": kvm_ioeventfd,
    "kvm_signal_mask": kvm_signal_mask,
    "kvm_cpuid_entry2": kvm_cpuid_entry2,
    "kvm_cpuid2": kvm_cpuid2,
}

#: Every field offset the package relies on: (C struct, C member path) -> Python offset.
CHECKED_FIELDS: dict[tuple[str, str], int] = {}
for _name, _cls in STRUCTS.items():
    for _fname, *_ in _cls._fields_:
        CHECKED_FIELDS[(_name, _fname)] = getattr(_cls, _fname).offset
for _path in (
    ("request_interrupt_window",), ("immediate_exit",), ("exit_reason",),
    ("ready_for_interrupt_injection",), ("if_flag",), ("flags",), ("cr8",), ("apic_base",),
    ("u",),
    ("u", "hw", "hardware_exit_reason"),
    ("u", "fail_entry", "hardware_entry_failure_reason"), ("u", "fail_entry", "cpu"),
    ("u", "ex", "exception"), ("u", "ex", "error_code"),
    ("u", "io", "direction"), ("u", "io", "size"), ("u", "io", "port"), ("u", "io", "count"),
    ("u", "io", "data_offset"),
    ("u", "mmio", "phys_addr"), ("u", "mmio", "data"), ("u", "mmio", "len"), ("u", "mmio", "is_write"),
    ("u", "internal", "suberror"), ("u", "internal", "ndata"), ("u", "internal", "data"),
):
    # The kernel's union is anonymous: C names the member without the "u.".
    CHECKED_FIELDS[("kvm_run", ".".join(p for p in _path if p != "u") or "u")] = _off(kvm_run, *_path)
del _name, _cls, _fname, _path
CHECKED_FIELDS.pop(("kvm_run", "u"))
#: Offset of the exit union inside struct kvm_run (checked against offsetof(struct kvm_run, hw)).
RUN_UNION_OFFSET = kvm_run.u.offset
CHECKED_FIELDS[("kvm_run", "hw")] = RUN_UNION_OFFSET
