"""The one libc call the mini VMM makes through ctypes: ``ioctl`` with a pointer argument.

``ioctl`` goes through ctypes rather than :func:`fcntl.ioctl` because it
passes plain addresses of ctypes structures without copying buffers. The one
exception is the hot ``KVM_RUN`` call in :mod:`lab.kvm.vcpu`, which takes no
argument: there :func:`fcntl.ioctl` is the cheaper call. Memory (guest RAM,
the ``kvm_run`` page) is mapped with Python's :class:`mmap.mmap`, which
refuses to unmap while views of it exist (:mod:`lab.kvm.memory`).
"""

from __future__ import annotations

import ctypes
import errno
import os

from lab.kvm.errors import IoctlError

_libc = ctypes.CDLL(None, use_errno=True)

_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

# PyErr_CheckSignals through ctypes.pythonapi (which holds the GIL and raises the
# exception a handler set): Python's signal handlers, run now rather than at some
# later bytecode. On a thread other than the main one it does nothing.
_check_signals = ctypes.pythonapi.PyErr_CheckSignals
_check_signals.argtypes = []
_check_signals.restype = ctypes.c_int

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def ioctl(fd: int, request: int, arg: int | ctypes.Array[ctypes.c_char] | ctypes.Structure | None = 0,
          *, what: str, detail: str = "") -> int:
    """``ioctl(fd, request, arg)``; ``arg`` is an int or a ctypes object passed by address.

    Returns the non-negative result; raises :class:`~lab.kvm.errors.IoctlError`
    (an :class:`OSError`) named ``what``, with ``detail`` appended to the message.
    A signal that interrupts the call (``EINTR``) first runs Python's handlers,
    so Ctrl-C is ``KeyboardInterrupt`` (or is held back by ``kick.sigint_deferred``),
    then the call is made again, as PEP 475 does for ``os`` calls.
    """
    # ``arg`` stays bound for the whole call: the structure must outlive the ioctl
    # (the caller may have passed a temporary that only this frame holds).
    address = arg if isinstance(arg, int) else 0 if arg is None else ctypes.addressof(arg)
    while True:
        ret: int = _ioctl(fd, request, address)
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise IoctlError(what, err, detail)
        _check_signals()
