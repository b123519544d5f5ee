"""The vhost idea in one thread: a virtqueue's kicks taken from an eventfd, beside the vCPU.

With the notify port registered through ``KVM_IOEVENTFD``, the guest's kick
ends inside KVM, which only adds one to the eventfd's counter. The
:class:`VhostWorker` thread waits on that eventfd and hands each wakeup to
its :class:`~lab.devices.models.VirtioDevice`, which then polls the ring on
this thread while the vCPU runs on its own (with kick suppression, for as
long as the driver keeps adding).
"""

from __future__ import annotations

import os
import select
import threading

from lab.devices.faults import WorkerFailed
from lab.devices.models import VirtioDevice
from lab.kvm.kick import sigint_deferred


class VhostWorker:
    """A host thread that takes virtqueue kicks from an eventfd (the vhost idea).

    With the notify port registered through ``KVM_IOEVENTFD``, the guest's
    ``out`` completes inside the kernel, which only increments the eventfd
    counter; this thread wakes up, reads the counter and processes the queue.
    The vCPU thread stays in ``KVM_RUN``. Use as a context manager; the thread
    is stopped and joined on exit, and the eventfds it made are closed.
    """

    def __init__(self, device: VirtioDevice, kick_fd: int | None = None) -> None:
        self.device = device
        self._own_kick = kick_fd is None
        self.kick_fd = os.eventfd(0, os.EFD_CLOEXEC) if kick_fd is None else kick_fd
        self._stop_fd = os.eventfd(0, os.EFD_CLOEXEC)
        self.kicks = 0    #: sum of eventfd counts: notifications the guest made
        self.wakeups = 0  #: times the thread woke up (kicks can coalesce)
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="vhost-worker", daemon=True)

    def __enter__(self) -> VhostWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        try:
            poller = select.poll()
            poller.register(self.kick_fd, select.POLLIN)
            poller.register(self._stop_fd, select.POLLIN)
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self.kick_fd in ready:
                    try:
                        self.kicks += os.eventfd_read(self.kick_fd)
                    except BlockingIOError:  # a non-blocking eventfd (KVM's) read by someone else first
                        continue
                    self.wakeups += 1
                    self.device.notify()
                if self._stop_fd in ready:
                    return
        except BaseException as exc:  # reported by close(), never lost
            self.failure = exc

    def close(self) -> None:
        with sigint_deferred():  # stopped, joined and closed whole, whenever a Ctrl-C comes
            if self._thread.is_alive():
                os.eventfd_write(self._stop_fd, 1)
                self._thread.join(timeout=5)
            fds = ([self.kick_fd] if self._own_kick else []) + ([self._stop_fd] if self._stop_fd >= 0 else [])
            self._own_kick = False
            self._stop_fd = -1
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise WorkerFailed(repr(failure)) from failure
