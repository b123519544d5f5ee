"""What differs between KVM's back ends, as the VMM sees it through ``/dev/kvm``: a table and its probes.

The same ``lab.kvm`` code runs on ``kvm_intel`` (VT-x), ``kvm_amd`` (AMD-V)
and ``kvm_pvm`` (PVM, no hardware virtualization). :data:`TABLE` says, for
each, what a VMM observes; the functions below observe it on the back end
at hand, and ``tests/test_backends.py`` checks one against the other on
every back end it runs on: PVM on the machines here (``make test``) and
``kvm_amd`` inside a QEMU TCG guest and ``kvm_intel`` inside a Bochs guest
(``make test-hwvirt``, see :mod:`lab.qemu.hwvirt` and :mod:`lab.qemu.bochs`:
QEMU's TCG emulates AMD-V but not VMX, Bochs emulates VMX).

Columns:

* ``native_hypercall`` - the hypercall instruction of the CPU's vendor
  (``vmcall`` on Intel, ``vmmcall`` on AMD);
* ``hypercall_completes`` - whether a hypercall from a tiny protected-mode
  guest returns from ``KVM_RUN`` at all (on PVM it never does: only the
  watchdog ends that ``KVM_RUN``);
* ``unknown_hypercall_rax`` - what the guest finds in ``rax`` after
  hypercall number 0, which KVM does not implement: ``-KVM_ENOSYS`` (-1000),
  truncated to 32 bits for a guest that is not in 64-bit mode
  (:func:`enosys_rax`; first seen on ``kvm_amd`` in the TCG guest:
  ``0xfffffc18`` from ``protected32``);
* ``foreign_hypercall`` - what happens to the other vendor's instruction:
  KVM patches it into the native one in guest memory (``rewritten``);
* ``nested_flag`` - the CPUID flag ``KVM_GET_SUPPORTED_CPUID`` offers for
  nested virtualization (``svm``/``vmx``; None on PVM);
* ``userspace_exits`` - which of the exit benchmark's kinds return to the
  VMM process (the others are completed inside the kernel);
* ``emulator`` - the software that emulates this back end's hardware for
  the tests here (``qemu-tcg``, ``bochs``; None where the back end is the
  host's own, PVM): :data:`EMULATORS` says which module boots it;
* ``guest_code`` - who executes the instructions of this book's tiny guests:
  ``cpu`` (VT-x / AMD-V run them on the processor until an exit) or
  ``emulator`` (PVM runs only PVM-aware 64-bit kernels directly; these guests
  go through KVM's instruction emulator, one instruction at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import guests, kvm

KVM_ENOSYS = 1000
#: -KVM_ENOSYS as a 64-bit register holds it; :func:`enosys_rax` gives the value per guest mode.
ENOSYS_RAX = (1 << 64) - KVM_ENOSYS


def enosys_rax(mode: str) -> int:
    """``rax`` after an unknown hypercall: KVM keeps only the low 32 bits unless the guest is in 64-bit mode."""
    return ENOSYS_RAX if mode == "long64" else ENOSYS_RAX & 0xFFFF_FFFF

INSTRUCTIONS = {"vmcall": b"\x0f\x01\xc1", "vmmcall": b"\x0f\x01\xd9"}
VENDOR_OF = {"vmcall": "intel", "vmmcall": "amd"}
#: Kinds of the exits benchmark, and which exit the VMM sees first when it resumes none.
PROBED_KINDS = ("cpuid", "pio_user", "mmio_user")


@dataclass(frozen=True)
class Backend:
    name: str
    hardware: str
    native_hypercall: str | None
    hypercall_completes: bool
    unknown_hypercall_rax: int | None
    foreign_hypercall: str | None
    nested_flag: str | None
    userspace_exits: tuple[str, ...]
    tested_here: str
    guest_code: str = "cpu"
    emulator: str | None = None


#: The emulators that provide a hardware back end for the tests here, and the module that boots each.
EMULATORS = {"qemu-tcg": "lab.qemu.hwvirt", "bochs": "lab.qemu.bochs"}


TABLE: dict[str, Backend] = {b.name: b for b in (
    Backend("kvm_amd", "AMD-V (SVM)", "vmmcall", True, ENOSYS_RAX, "rewritten", "svm",
            ("pio_user", "mmio_user"), "in a QEMU TCG guest (emulated AMD-V): make test-hwvirt",
            emulator="qemu-tcg"),
    Backend("kvm_intel", "Intel VT-x", "vmcall", True, ENOSYS_RAX, "rewritten", "vmx",
            ("pio_user", "mmio_user"), "in a Bochs guest (emulated VT-x): make test-hwvirt",
            emulator="bochs"),
    Backend("kvm_pvm", "none (PVM: guest at CPL 3 on shadow page tables)", None, False, None, None, None,
            ("pio_user", "mmio_user"), "on the host: make test", guest_code="emulator"),
)}


def emulated_by(emulator: str) -> Backend:
    """The back end whose hardware ``emulator`` (a key of :data:`EMULATORS`) emulates for the tests here."""
    found = [b for b in TABLE.values() if b.emulator == emulator]
    if len(found) != 1:
        raise ValueError(f"{len(found)} back ends of lab.backends.TABLE are emulated by {emulator!r}; "
                         f"emulators: {', '.join(EMULATORS)}")
    return found[0]


def cpuid_flags(system: kvm.System) -> frozenset[str]:
    """Virtualization flags in ``KVM_GET_SUPPORTED_CPUID``: ``vmx`` (leaf 1 ecx bit 5), ``svm``
    (leaf 0x80000001 ecx bit 2), ``hypervisor`` (leaf 1 ecx bit 31)."""
    table = system.supported_cpuid()
    flags = set()
    for e in table.entries[:table.nent]:
        if e.function == 1:
            flags |= {"vmx"} if e.ecx >> 5 & 1 else set()
            flags |= {"hypervisor"} if e.ecx >> 31 & 1 else set()
        elif e.function == 0x8000_0001 and e.ecx >> 2 & 1:
            flags.add("svm")
    return frozenset(flags)


def nested_flag(system: kvm.System) -> str | None:
    found = cpuid_flags(system) & {"svm", "vmx"}
    return next(iter(sorted(found)), None)


@dataclass(frozen=True)
class Hypercall:
    exit: str  # the exit KVM_RUN returned with ("hlt" when the hypercall completed in the kernel)
    rax: int
    code_after: bytes  # the instruction's bytes in guest memory after the run


def hypercall(system: kvm.System, instruction: str, mode: str = "protected32",
              timeout_s: float = 5.0) -> Hypercall:
    """Run hypercall number 0 with ``instruction`` (``vmcall``/``vmmcall``) in ``mode``, then ``hlt``.

    Call it only where the hypercall completes (``TABLE[...].hypercall_completes``):
    elsewhere the vCPU may stay inside ``KVM_RUN`` beyond the watchdog's reach
    (``lab.bench.exits.probe_hypercall`` asks in a child process instead).
    """
    program = guests.hypercall_once(VENDOR_OF[instruction], mode)
    at = program.listing[-2][0]
    with system.create_vm(memory_kib=64) as vm:
        vm.load(program)
        vcpu = vm.create_vcpu(mode=program.mode, entry=program.origin)
        ex = vcpu.run(timeout_s=timeout_s)
        return Hypercall(ex.reason, vcpu.get_regs().rax, vm.read(at, 3))


def userspace_exits(system: kvm.System, timeout_s: float = 5.0) -> tuple[str, ...]:
    """The kinds of :data:`PROBED_KINDS` whose one exit comes back to this process (the run
    loop resumes nothing, so the first exit it returns tells whether the kernel completed it)."""
    reached = []
    for kind in PROBED_KINDS:
        program = guests.exit_loop(kind, 1)
        with system.create_vm(memory_kib=64) as vm:
            vm.load(program)
            ex = vm.create_vcpu(mode=program.mode, entry=program.origin).run(timeout_s=timeout_s)
        if ex.reason not in ("hlt", "io", "mmio"):
            raise kvm.GuestError(f"{kind}: unexpected {ex.reason} exit: {ex}", ex)
        if ex.reason != "hlt":
            reached.append(kind)
    return tuple(reached)
