"""What each KVM back end lets this book measure, and what one benchmark number contains there.

Built on :data:`lab.backends.TABLE`: a back end whose ``guest_code`` is
``cpu`` (VT-x, AMD-V) runs the book's guests on the processor until an exit,
so the empty loop costs about what it costs natively and an exit's cost is the
hardware exit plus KVM's handler. On ``kvm_pvm`` the same guests go through
KVM's instruction emulator: every row of the exits benchmark contains the
emulation of the guest's loop and of the exiting instruction, no hardware exit
happens at all, and subtracting the empty loop leaves emulation work, not "the
exit itself". Two quantities stay sound everywhere: the number of exits per
request (counted, exact), and the user-space round trip (``pio_user`` minus
``pio_ioeventfd``: the same guest bytes, one returns to the VMM and one does
not, so whatever the guest's instructions cost cancels).

A back end not in the table (``unknown``, or a module the probe named but the
table does not know) can measure only what needs no knowledge of the back end.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.backends import TABLE

UNKNOWN = "unknown"

#: The quantities a page may state, and what each is.
QUANTITIES: dict[str, str] = {
    "exits_per_request": "exits per I/O request, counted by the VMM or by the eventfd (exact)",
    "userspace_round_trip": "pio_user minus pio_ioeventfd: the same guest bytes, returning to the VMM or not",
    "in_kernel_exit": "an exit KVM completes in the kernel (cpuid, pio_ioeventfd) net of the empty loop",
    "hardware_exit_cost": "the VM exit and VM entry of VT-x / AMD-V with KVM's handler, as kvm-unit-tests measures",
    "emulated_instruction_cost": "cycles KVM's instruction emulator spends on the guest's instructions",
    "native_loop": "the empty dec/jnz loop run by the host natively (no KVM involved)",
}

#: The parts one row of the exits benchmark can contain.
PARTS: dict[str, str] = {
    "loop_on_cpu": "the guest's dec/jnz timing loop, executed by the processor",
    "loop_emulated": "the guest's dec/jnz timing loop, executed by KVM's instruction emulator",
    "hardware_exit": "the VM exit and VM entry of VT-x / AMD-V",
    "instruction_emulated": "KVM's emulator decoding and executing the instruction that causes the exit",
    "kvm_handler": "KVM's handler for the exit (the cpuid table, the I/O or MMIO decode)",
    "eventfd_signal": "KVM signalling the eventfd registered with KVM_IOEVENTFD",
    "userspace_round_trip": "KVM_RUN returning to the VMM process, the VMM's handling, and the next KVM_RUN",
}

_ON_CPU: dict[str, tuple[str, ...]] = {
    "loop": ("loop_on_cpu",),
    "cpuid": ("loop_on_cpu", "hardware_exit", "kvm_handler"),
    "hypercall": ("loop_on_cpu", "hardware_exit", "kvm_handler"),
    "pio_user": ("loop_on_cpu", "hardware_exit", "kvm_handler", "userspace_round_trip"),
    "mmio_user": ("loop_on_cpu", "hardware_exit", "kvm_handler", "userspace_round_trip"),
    "pio_ioeventfd": ("loop_on_cpu", "hardware_exit", "kvm_handler", "eventfd_signal"),
}
_EMULATED: dict[str, tuple[str, ...]] = {
    "loop": ("loop_emulated",),
    "cpuid": ("loop_emulated", "instruction_emulated", "kvm_handler"),
    "hypercall": ("loop_emulated", "instruction_emulated", "kvm_handler"),
    "pio_user": ("loop_emulated", "instruction_emulated", "kvm_handler", "userspace_round_trip"),
    "mmio_user": ("loop_emulated", "instruction_emulated", "kvm_handler", "userspace_round_trip"),
    "pio_ioeventfd": ("loop_emulated", "instruction_emulated", "kvm_handler", "eventfd_signal"),
}
KINDS = tuple(_ON_CPU)


def backend_name(kvm_backend: str | None) -> str:
    """The name :data:`lab.backends.TABLE` knows, or :data:`UNKNOWN`."""
    return kvm_backend if kvm_backend in TABLE else UNKNOWN


def guest_code(kvm_backend: str | None) -> str | None:
    """``cpu``, ``emulator``, or None when the back end is not known."""
    name = backend_name(kvm_backend)
    return None if name == UNKNOWN else TABLE[name].guest_code


def can_measure(quantity: str, kvm_backend: str | None) -> bool:
    """Whether the benchmarks measure ``quantity`` soundly on ``kvm_backend``."""
    if quantity not in QUANTITIES:
        raise KeyError(f"unknown quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
    if quantity in ("exits_per_request", "userspace_round_trip", "native_loop"):
        return True
    code = guest_code(kvm_backend)
    if quantity in ("in_kernel_exit", "hardware_exit_cost"):
        return code == "cpu"
    return code == "emulator"  # emulated_instruction_cost


def contents(kind: str, kvm_backend: str | None) -> tuple[str, ...] | None:
    """The :data:`PARTS` one row of ``kind`` contains on ``kvm_backend`` (None: the back end is not known)."""
    if kind not in KINDS:
        raise KeyError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    code = guest_code(kvm_backend)
    if code is None:
        return None
    return (_ON_CPU if code == "cpu" else _EMULATED)[kind]


@dataclass(frozen=True)
class Capabilities:
    """One back end's answers, for a page that words them once."""

    backend: str                 #: a TABLE name or :data:`UNKNOWN`
    guest_code: str | None       #: ``cpu``, ``emulator`` or None
    measurable: tuple[str, ...]  #: the quantities measured soundly there
    exit_costs: bool             #: a row net of the empty loop is an exit cost, comparable with bare metal
    comparable: str              #: the quantity to compare across hosts and with published figures

    @property
    def emulated(self) -> bool:
        return self.guest_code == "emulator"


def capabilities(kvm_backend: str | None) -> Capabilities:
    name = backend_name(kvm_backend)
    measurable = tuple(q for q in QUANTITIES if can_measure(q, name))
    exit_costs = can_measure("hardware_exit_cost", name)
    return Capabilities(name, guest_code(name), measurable, exit_costs,
                        "hardware_exit_cost" if exit_costs else "userspace_round_trip")
