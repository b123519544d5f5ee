"""Numeric constants of <linux/kvm.h> other than ioctl numbers.

Exit reasons, capabilities and flags are plain enumerations in the header, so
they are written out here; ``tests/test_kvm_abi.py`` compares each against
the header compiled with gcc.
"""

from __future__ import annotations

# struct kvm_run.exit_reason
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# struct kvm_run.internal.suberror
KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4

# KVM_CHECK_EXTENSION arguments
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_NR_VCPUS = 9
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_IOEVENTFD = 36
KVM_CAP_GET_TSC_KHZ = 61
KVM_CAP_IMMEDIATE_EXIT = 136

# struct kvm_ioeventfd.flags
KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
KVM_IOEVENTFD_FLAG_PIO = 1 << 1
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2

EXIT_NAMES = {
    value: name[len("KVM_EXIT_"):].lower()
    for name, value in dict(globals()).items()
    if name.startswith("KVM_EXIT_") and name not in ("KVM_EXIT_IO_IN", "KVM_EXIT_IO_OUT")
}

ALL = {name: value for name, value in dict(globals()).items()
       if name.startswith("KVM_") and isinstance(value, int)}
