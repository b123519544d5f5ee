"""ioctl request numbers built the way <asm-generic/ioctl.h> builds them.

Numbers are never copied as hex: each is derived from its direction, the KVM
ioctl type (0xAE), its ordinal and the size of its argument struct, exactly as
the kernel's ``_IO``/``_IOR``/``_IOW``/``_IOWR`` macros do. A test compiles a C
program against <linux/kvm.h> and compares every number defined here.
"""

from __future__ import annotations

import ctypes

from lab.kvm.structs import (
    kvm_cpuid2,
    kvm_ioeventfd,
    kvm_regs,
    kvm_signal_mask,
    kvm_sregs,
    kvm_userspace_memory_region,
)

# <asm-generic/ioctl.h> field widths (x86 uses the generic layout).
_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    if not 0 <= size < (1 << _IOC_SIZEBITS):
        raise ValueError(f"ioctl argument size {size} does not fit in {_IOC_SIZEBITS} bits")
    return (
        (direction << _IOC_DIRSHIFT)
        | (type_ << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def _size(arg: type | int) -> int:
    return arg if isinstance(arg, int) else ctypes.sizeof(arg)


def _IO(type_: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type_, nr, 0)


def _IOR(type_: int, nr: int, arg: type | int) -> int:
    return _IOC(_IOC_READ, type_, nr, _size(arg))


def _IOW(type_: int, nr: int, arg: type | int) -> int:
    return _IOC(_IOC_WRITE, type_, nr, _size(arg))


def _IOWR(type_: int, nr: int, arg: type | int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, _size(arg))


KVMIO = 0xAE

# System ioctls (on the /dev/kvm file descriptor).
KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
KVM_CREATE_VM = _IO(KVMIO, 0x01)
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, kvm_cpuid2)

#: The only API version the kernel has reported since Linux 2.6.22.
KVM_API_VERSION = 12

# VM ioctls (on a VM file descriptor).
KVM_CREATE_VCPU = _IO(KVMIO, 0x41)
KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47)
KVM_IOEVENTFD = _IOW(KVMIO, 0x79, kvm_ioeventfd)

# vCPU ioctls (on a vCPU file descriptor).
KVM_RUN = _IO(KVMIO, 0x80)
KVM_GET_REGS = _IOR(KVMIO, 0x81, kvm_regs)
KVM_SET_REGS = _IOW(KVMIO, 0x82, kvm_regs)
KVM_GET_SREGS = _IOR(KVMIO, 0x83, kvm_sregs)
KVM_SET_SREGS = _IOW(KVMIO, 0x84, kvm_sregs)
KVM_SET_SIGNAL_MASK = _IOW(KVMIO, 0x8B, kvm_signal_mask)
KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, kvm_cpuid2)
KVM_GET_TSC_KHZ = _IO(KVMIO, 0xA3)

#: Every ioctl number above, by its <linux/kvm.h> name (the ABI test walks this).
ALL = {name: value for name, value in dict(globals()).items()
       if name.startswith("KVM_") and name != "KVM_API_VERSION" and isinstance(value, int)}
