"""What a vCPU reports when ``KVM_RUN`` returns: the normal outcomes.

Outcomes the caller handles (HLT, port I/O, MMIO) come back as an
:class:`Exit`. Everything else (triple fault, failed entry, internal error,
an exit reason the mini VMM does not know, a watchdog timeout) is raised as a
typed error from :mod:`lab.kvm.errors`: nothing unknown is silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Exit:
    """One exit of the guest to the VMM.

    ``reason`` is ``"hlt"``, ``"io"`` or ``"mmio"``. For ``io``: ``port``,
    ``size`` (bytes per access), ``direction`` (``"in"``/``"out"``), ``count``
    and ``data`` (the bytes the guest wrote). For ``mmio``: ``address``,
    ``size``, ``direction`` (``"write"``/``"read"``), ``data``.
    ``resumed`` counts the exits the run loop handled on the way without
    returning (see :meth:`lab.kvm.vcpu.Vcpu.run`); ``wall_ns`` is the host
    time spent in the whole call.
    """

    reason: str
    rip: int
    port: int | None = None
    address: int | None = None
    size: int | None = None
    direction: str | None = None
    count: int | None = None
    data: bytes | None = None
    resumed: int = 0
    wall_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def rows(self) -> list[tuple[str, str]]:
        out = []
        for key, value in self.as_dict().items():
            if key in ("rip", "port", "address"):
                value = f"{value:#x}"
            elif isinstance(value, bytes):
                value = value.hex(" ") or "(none)"
            out.append((key, str(value)))
        return out

    def _repr_html_(self) -> str:  # shown as a small table in notebooks
        cells = "".join(f"<tr><th style='text-align:left'>{k}</th><td><code>{v}</code></td></tr>"
                        for k, v in self.rows())
        return f"<table><caption>Exit</caption>{cells}</table>"
