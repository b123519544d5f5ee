"""The few libc calls the mini VMM needs, through ctypes (no compiled extension).

``ioctl`` goes through ctypes rather than :func:`fcntl.ioctl` because it
passes plain addresses of ctypes structures without copying buffers. The one
exception is the hot ``KVM_RUN`` call in :mod:`lab.kvm.vcpu`, which takes no
argument: there :func:`fcntl.ioctl` is the cheaper call (see ``Vcpu._loop``).
Guest memory and the ``kvm_run`` page are mapped with libc ``mmap`` so that
their addresses are stable and can be unmapped deterministically.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)

_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

_mmap = _libc.mmap
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mmap.restype = ctypes.c_void_p

_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_munmap.restype = ctypes.c_int

PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def ioctl(fd: int, request: int, arg: int | ctypes._CData | None = 0, *, what: str = "") -> int:
    """``ioctl(fd, request, arg)``; ``arg`` is an int or a ctypes object passed by address.

    Returns the non-negative result; raises :class:`OSError` with ``errno``
    otherwise (``what`` names the operation in the message).
    """
    if arg is None:
        arg = 0
    if not isinstance(arg, int):
        arg = ctypes.addressof(arg)
    ret = _ioctl(fd, request, arg)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what or hex(request)}: {os.strerror(err)}")
    return ret


#: address -> size of every mapping made here and not yet unmapped (tests check it drains).
LIVE_MAPPINGS: dict[int, int] = {}


def mmap_anonymous(size: int) -> int:
    """Private zero-filled memory of ``size`` bytes; returns its address."""
    addr = _mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of {size} bytes of guest memory: {os.strerror(err)}")
    LIVE_MAPPINGS[addr] = size
    return addr


def mmap_fd(fd: int, size: int) -> int:
    """A shared mapping of ``size`` bytes of ``fd`` at offset 0 (the vCPU's kvm_run page)."""
    addr = _mmap(None, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of the vCPU's kvm_run area: {os.strerror(err)}")
    LIVE_MAPPINGS[addr] = size
    return addr


def munmap(addr: int, size: int) -> None:
    if _munmap(addr, size) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"munmap: {os.strerror(err)}")
    LIVE_MAPPINGS.pop(addr, None)


EINTR = errno.EINTR
EAGAIN = errno.EAGAIN
