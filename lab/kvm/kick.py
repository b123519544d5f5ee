"""Getting a vCPU out of ``KVM_RUN``: the watchdog, Ctrl-C, and explicit kicks.

A guest that never leaves (``jmp $``), or a hypercall KVM keeps
re-executing, keeps ``KVM_RUN`` busy forever, and Python runs signal handlers
only between bytecodes of the main thread. So every run is guarded the way
Firecracker and QEMU kick their vCPU threads: set ``kvm_run.immediate_exit``
and send :data:`KICK_SIGNAL` to the vCPU's thread. That signal is blocked in
the thread except while it is inside ``KVM_RUN`` (``KVM_SET_SIGNAL_MASK``),
so it never reaches a handler: KVM leaves the guest, ``KVM_RUN`` returns
``EINTR``, and the pending signal is consumed with ``sigtimedwait``.

A monitor thread sends the kick when

* the deadline passes (the watchdog: :class:`~lab.kvm.errors.RunTimeout`);
* the process receives a signal that has a Python handler, e.g. SIGINT from
  Ctrl-C or JupyterLab's "Interrupt kernel", on whichever thread the kernel
  delivered it: Python's C-level handler writes the signal number to the
  wakeup fd (:func:`signal.set_wakeup_fd`), which the monitor watches. Once
  ``KVM_RUN`` has returned, the main thread runs the handler, which raises
  ``KeyboardInterrupt`` (main thread only: elsewhere only the watchdog and
  :meth:`Guard.kick` apply);
* another thread calls :meth:`Guard.kick` (``Vcpu.kick``).

Arming and disarming (a pipe, the wakeup fd, the monitor thread) run under
:func:`sigint_deferred`, so that a Ctrl-C at any bytecode cannot leave the
pipe open or the monitor unjoined: it is raised right after.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Signal used to kick a vCPU out of ``KVM_RUN`` (blocked outside ``KVM_RUN``).
KICK_SIGNAL = signal.SIGRTMIN + 5
KICK_SIGNAL_NAME = "SIGRTMIN+5"

_STOP = b"\0"  # what the run writes to the monitor's pipe when it ends (no signal is number 0)


def sigset_bytes(signals: Iterable[int]) -> bytes:
    """The kernel's 64-bit sigset for ``KVM_SET_SIGNAL_MASK``: bit n-1 stands for signal n."""
    mask = 0
    for s in signals:
        mask |= 1 << (int(s) - 1)
    return mask.to_bytes(8, "little")


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back until the block ends, then deliver it as the handler in place would.

    Between acquiring a resource and recording it (an fd, a started thread) a
    ``KeyboardInterrupt`` would leak the resource. Only the main thread can
    receive ``KeyboardInterrupt`` (and set handlers), so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            # Let go of the interrupted frame before the handler raises: kept here, it would tie
            # that frame (and whatever it holds, guest memory, a vCPU) into a cycle with the
            # exception's traceback, freed only by a later garbage collection.
            signum, frame = caught.pop(0)
            caught.clear()
            try:
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    signal.raise_signal(signal.SIGINT)
            finally:
                del frame


class Guard:
    """Arms the kicks for one run on the calling thread; use as a context manager.

    ``set_immediate_exit(value)`` writes ``kvm_run.immediate_exit``.
    ``vcpu_mask`` (after ``__enter__``) is the signal mask KVM should apply
    inside ``KVM_RUN``: the thread's own, minus :data:`KICK_SIGNAL`.
    """

    def __init__(self, set_immediate_exit: Callable[[int], None], timeout_s: float) -> None:
        self._set_immediate_exit = set_immediate_exit
        self.timeout_s = timeout_s
        self.cause: str | None = None  #: "timeout", "signal" or "kick" once a kick was sent
        self.start_ns = 0
        self._lock = threading.Lock()
        self._tid = 0
        self._old_mask: set[int] = set()
        self._old_wakeup = -1
        self._pipe: tuple[int, int] | None = None
        self._monitor: threading.Thread | None = None

    @property
    def vcpu_mask(self) -> bytes:
        return sigset_bytes(set(self._old_mask) - {KICK_SIGNAL})

    def __enter__(self) -> Guard:
        # A failure here, or a Ctrl-C held back until the arming is done, disarms
        # again: a with statement does not call __exit__ when __enter__ raises.
        try:
            with sigint_deferred():
                self._tid = threading.get_ident()
                self._old_mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, {KICK_SIGNAL}))
                r, w = self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                if threading.current_thread() is threading.main_thread():
                    self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
                monitor = threading.Thread(target=self._watch, args=(r,), name="vcpu-watchdog", daemon=True)
                self.start_ns = time.perf_counter_ns()
                monitor.start()
                self._monitor = monitor  # only a started thread is joined
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with sigint_deferred():
            if self._pipe is not None:
                r, w = self._pipe
                if self._monitor is not None:
                    os.write(w, _STOP)
                    self._monitor.join()
                    self._monitor = None
                if threading.current_thread() is threading.main_thread():
                    signal.set_wakeup_fd(self._old_wakeup)
                os.close(r)
                os.close(w)
                self._pipe = None
            self.after_eintr()
            signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def kick(self, cause: str = "kick") -> None:
        """Make the guarded thread's ``KVM_RUN`` return ``EINTR`` now (from any thread)."""
        with self._lock:
            if self.cause is None or cause == "timeout":
                self.cause = cause
            self._set_immediate_exit(1)
            signal.pthread_kill(self._tid, KICK_SIGNAL)

    def after_eintr(self) -> str | None:
        """On the vCPU thread after ``EINTR``: consume a pending kick; returns what caused it (or None)."""
        with self._lock:
            self._set_immediate_exit(0)
            while signal.sigtimedwait({KICK_SIGNAL}, 0) is not None:
                pass
            cause, self.cause = self.cause, None
            return "timeout" if cause is None and self.expired() else cause

    def expired(self) -> bool:
        return time.perf_counter_ns() - self.start_ns >= self.timeout_s * 1e9

    def _watch(self, r: int) -> None:
        poller = select.poll()
        poller.register(r, select.POLLIN)
        deadline: float | None = self.start_ns + self.timeout_s * 1e9
        while True:
            left_ms = None if deadline is None else max(0.0, (deadline - time.perf_counter_ns()) / 1e6)
            if not poller.poll(left_ms):
                self.kick("timeout")
                deadline = None  # kicked once; now wait for the run to end
                continue
            try:
                got = os.read(r, 512)
            except BlockingIOError:
                continue
            signals = got.replace(_STOP, b"")
            if signals:
                if self._old_wakeup >= 0:  # whoever listened before us (an asyncio loop) still hears them
                    try:
                        os.write(self._old_wakeup, signals)
                    except OSError:
                        pass
                self.kick("signal")
            if _STOP in got:
                return
