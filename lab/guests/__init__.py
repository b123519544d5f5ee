"""Guest programs of a few bytes, each readable as assembly with its bytes.

A :class:`Program` is machine code plus the listing the book shows:
address, bytes, assembly (GNU as, Intel syntax) and a comment. The code is
built by :mod:`lab.guests.asm`, and a test re-assembles every listing with
GNU ``as`` to check the bytes.

Memory map shared by the guests (all inside the first 64 KiB of guest RAM):

* ``0x1000`` code (:data:`CODE_ADDR`)
* ``0x0800`` results written by the timing loops (:data:`RESULT_ADDR`)
* ``0xd000_0000`` an address with no memory behind it (:data:`MMIO_ADDR`)
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from lab.guests import asm
from lab.guests.asm import Item, Label, Line, simple

CODE_ADDR = 0x1000
RESULT_ADDR = 0x0800
MMIO_ADDR = 0xD000_0000
SERIAL_PORT = 0x3F8  # COM1's data register: the classic "print a byte" port
EXIT_PORT = 0x0510  # the port the timing loops write to; no device is there

#: The columns of :meth:`Program.rows`.
LISTING_COLUMNS = ("address", "bytes", "label", "assembly", "comment")

HYPERCALL_INSN = {"intel": asm.VMCALL, "amd": asm.VMMCALL, "hygon": asm.VMMCALL}


@dataclass(frozen=True)
class Program:
    """A guest: ``code`` to load at ``origin`` and run in ``mode``."""

    name: str
    mode: str
    origin: int
    code: bytes
    listing: tuple[Line, ...]
    description: str

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """The listing as text cells: address, bytes, label, assembly, comment."""
        return [(f"{a:#06x}", b.hex(" "), label, text, com) for a, b, label, text, com in self.listing]

    def source(self) -> str:
        """GNU as source of the program (what the byte test assembles)."""
        directive = {"real": ".code16", "protected32": ".code32", "long64": ".code64"}[self.mode]
        lines = [".intel_syntax noprefix", directive]
        for _addr, _b, label, text, _c in self.listing:
            if label:
                lines.append(f"{label}:")
            lines.append(f"    {text}")
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """The listing as plain text, bytes next to each instruction."""
        rows = []
        for a, b, label, text, comment in self.listing:
            head = f"{label}:" if label else ""
            rows.append(f"{a:#06x}  {b.hex(' '):<20} {head:<7} {text:<28} {'; ' + comment if comment else ''}".rstrip())
        return "\n".join(rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in LISTING_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _program(name: str, mode: str, items: list[Item], description: str, origin: int = CODE_ADDR) -> Program:
    code, listing = asm.assemble(items, origin)
    return Program(name, mode, origin, code, tuple(listing), description)


def hello(text: str = "Hi\n") -> Program:
    """Real mode: write ``text`` to the serial port a byte at a time, then halt."""
    items: list[Item] = [asm.mov_dx_imm16(SERIAL_PORT, "real", "COM1 data port")]
    for ch in text.encode("ascii"):
        items += [asm.mov_al_imm8(ch, repr(chr(ch))), simple(*asm.OUT_DX_AL, comment="exit: KVM_EXIT_IO")]
    items.append(simple(*asm.HLT, comment="exit: KVM_EXIT_HLT"))
    return _program("hello", "real", items, "real mode: print to the serial port, then halt")


HELLO = hello()

#: What each timing loop measures (the kinds of ``python -m lab bench exits``).
KINDS = ("loop", "cpuid", "hypercall", "pio_user", "mmio_user", "pio_ioeventfd")


def body(kind: str, mode: str = "protected32", vendor: str | None = None) -> list[Item]:
    """The instruction(s) inside the timing loop whose exit is measured."""
    if kind == "cpuid":
        return [simple(*asm.XOR_EAX_EAX, comment="leaf 0"), simple(*asm.CPUID, comment="exit, handled in the kernel")]
    if kind == "hypercall":
        return hypercall_body(vendor)
    if kind == "pio_user":
        return [simple(*asm.OUT_DX_AL, comment="exit to the VMM process and back")]
    if kind == "pio_ioeventfd":
        return [simple(*asm.OUT_DX_AL, comment="completed in the kernel by ioeventfd")]
    if kind == "mmio_user":
        store = asm.STORE_AL_AT_RBX if mode == "long64" else asm.STORE_AL_AT_EBX
        return [simple(*store, comment="store to unmapped memory: MMIO exit")]
    if kind == "loop":
        return []  # the bare loop: what the timing costs without any exit
    raise ValueError(f"unknown exit kind {kind!r}; choose one of {KINDS}")


def hypercall_body(vendor: str | None) -> list[Item]:
    """``vmcall`` on Intel, ``vmmcall`` on AMD, with hypercall number 0 (not implemented: -KVM_ENOSYS).

    The guest cannot know the host: the caller names the vendor (``lab.bench.exits.cpu_vendor()``).
    """
    if vendor is None:
        raise ValueError("a hypercall guest needs the CPU vendor (vendor='intel' or 'amd'): the instruction "
                         "differs; lab.bench.exits.cpu_vendor() gives this host's")
    text, code = HYPERCALL_INSN.get(vendor, asm.VMCALL)
    return [simple(*asm.XOR_EAX_EAX, comment="hypercall number 0"), simple(text, code, comment="exit to KVM")]


def exit_loop(kind: str, iterations: int, *, vendor: str | None = None, mode: str = "protected32") -> Program:
    """Time ``iterations`` exits of ``kind`` with ``rdtsc`` (``protected32`` or ``long64``).

    ``vendor`` (``"intel"``, ``"amd"``) matters only to the ``hypercall`` kind, which needs it.

    The start and end TSC values are stored at :data:`RESULT_ADDR`
    (start low, start high, end low, end high), then the guest halts.
    """
    if not 1 <= iterations < 2**32:
        raise ValueError(f"iterations must be between 1 and 2**32-1, not {iterations}")
    if mode not in ("protected32", "long64"):
        raise ValueError(f"timing loops run in protected32 or long64, not {mode!r}")
    r = RESULT_ADDR
    items: list[Item] = [
        asm.mov_imm32("ebp", iterations, "loop counter"),
        asm.mov_imm32("ebx", MMIO_ADDR, "address with no memory"),
        simple(*asm.RDTSC, comment="start: edx:eax = TSC"),
        asm.op("mov", "esi", "eax"),
        asm.op("mov", "edi", "edx"),
        asm.mov_dx_imm16(EXIT_PORT, mode, "port for out (after rdtsc, which sets edx)"),
        Label("loop"),
        *body(kind, mode, vendor),
        simple(*(asm.DEC_EBP_64 if mode == "long64" else asm.DEC_EBP)),
        asm.jump("jnz", "loop"),
        simple(*asm.RDTSC, comment="end"),
        asm.store(r, "esi", "results for the host", mode=mode),
        asm.store(r + 4, "edi", mode=mode),
        asm.store(r + 8, "eax", mode=mode),
        asm.store(r + 12, "edx", mode=mode),
        simple(*asm.HLT, comment="exit: KVM_EXIT_HLT"),
    ]
    return _program(f"exit_loop_{kind}", mode, items, f"{mode}: {iterations} x {kind}, timed with rdtsc")


def hypercall_once(vendor: str, mode: str = "protected32") -> Program:
    """One hypercall, then halt (the probe before a hypercall benchmark)."""
    return _program("hypercall_once", mode, [*hypercall_body(vendor), simple(*asm.HLT)],
                    f"{mode}: a single hypercall, then halt")


# Bad guests: each ends in a typed error, never a hang.
TRIPLE_FAULT = _program("triple_fault", "protected32",
                        [simple(*asm.UD2, comment="#UD, no IDT -> #DF -> triple fault")],
                        "an invalid opcode with no IDT: triple fault (KVM_EXIT_SHUTDOWN)")
JUMP_UNMAPPED = _program("jump_unmapped", "protected32",
                         [asm.mov_imm32("eax", MMIO_ADDR), simple(*asm.JMP_EAX, comment="no memory there")],
                         "a jump to an address with no memory behind it")
#: A guest that never exits. It spins with interrupts enabled (RFLAGS.IF=1): nothing injects an
#: interrupt into it, so on KVM's back ends that changes nothing, but under Bochs' emulated VT-x
#: (``make test-hwvirt``, :mod:`lab.qemu.bochs`) an L2 guest spinning with IF=0 has the host's
#: external interrupts masked too (a Bochs bug), so the kernel running KVM gets no timer again
#: and the watchdog's signal is never delivered.
SPIN = _program("spin", "protected32", [simple(*asm.STI, comment="interrupts on (see the docstring)"),
                                        asm.jmp_self("never exits")],
                "a guest that never exits: the watchdog must stop it")
MMIO_STORE = _program("mmio_store", "protected32",
                      [asm.mov_imm32("ebx", MMIO_ADDR), asm.mov_al_imm8(0x2A),
                       simple(*asm.STORE_AL_AT_EBX, comment="exit: KVM_EXIT_MMIO"), simple(*asm.HLT)],
                      "one store to unmapped memory, then halt")
CPUID_ONCE = _program("cpuid_once", "protected32",
                      [simple(*asm.XOR_EAX_EAX), simple(*asm.CPUID, comment="handled inside KVM"),
                       simple(*asm.HLT, comment="exit: KVM_EXIT_HLT")],
                      "cpuid (the kernel answers it), then halt")

ALL = {p.name: p for p in (HELLO, TRIPLE_FAULT, JUMP_UNMAPPED, SPIN, MMIO_STORE, CPUID_ONCE)}
