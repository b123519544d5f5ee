"""x86 CPU modes for a fresh vCPU: segment and control registers, identity page tables.

A vCPU starts in 16-bit real mode, as after a reset. :func:`set_mode` turns
a ``kvm_sregs`` into one of :data:`MODES`; long mode also needs page tables
in guest memory (:func:`page_tables`). :func:`check` validates a mode, an
entry point and the memory it needs before the VMM issues any ioctl.
"""

from __future__ import annotations

from collections.abc import Callable

from lab.kvm.errors import InvalidSetup
from lab.kvm.structs import kvm_segment, kvm_sregs

MODES = ("real", "protected32", "long64")
#: Where ``long64`` puts its identity-mapped page tables (PML4, PDPT, 4 page directories).
PAGE_TABLE_ADDR = 0x8000
PAGE_TABLE_SIZE = 6 * 0x1000

CR0_PE, CR0_ET, CR0_NE, CR0_PG = 1 << 0, 1 << 4, 1 << 5, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
_PRESENT_RW, _PAGE_2M = 0x3, 0x80


def check(mode: str, entry: int, has_memory: Callable[[int, int], bool]) -> None:
    """Raise :class:`InvalidSetup` unless ``mode`` and ``entry`` can work with this guest memory.

    ``has_memory(addr, length)`` says whether guest RAM backs a range.
    """
    if mode not in MODES:
        raise InvalidSetup(f"unknown mode {mode!r}; choose one of {MODES}")
    if mode == "real" and not 0 <= entry <= 0xFFFF:
        raise InvalidSetup(f"real-mode entry {entry:#x} must be below 64 KiB")
    if not 0 <= entry <= 0xFFFF_FFFF:
        raise InvalidSetup(f"entry {entry:#x} must be inside the first 4 GiB")
    if mode == "long64" and not has_memory(PAGE_TABLE_ADDR, PAGE_TABLE_SIZE):
        raise InvalidSetup(f"long mode needs guest RAM at [{PAGE_TABLE_ADDR:#x}, "
                           f"{PAGE_TABLE_ADDR + PAGE_TABLE_SIZE:#x}) for its page tables; give the VM more memory")


def page_tables(base: int = PAGE_TABLE_ADDR) -> list[tuple[int, bytes]]:
    """Identity-map the first 4 GiB with 2 MiB pages: ``(guest address, bytes)`` to write; CR3 is ``base``.

    PML4[0] -> PDPT; PDPT[i] -> page directory i (i < 4); each directory
    maps 512 x 2 MiB. Addresses with no memory slot stay unmapped for KVM
    (MMIO), but are valid for the guest's own paging.
    """
    pml4 = (base + 0x1000 | _PRESENT_RW).to_bytes(8, "little")
    pdpt = b"".join((base + 0x2000 + i * 0x1000 | _PRESENT_RW).to_bytes(8, "little") for i in range(4))
    pds = b"".join(((i << 21) | _PRESENT_RW | _PAGE_2M).to_bytes(8, "little") for i in range(4 * 512))
    return [(base, pml4), (base + 0x1000, pdpt), (base + 0x2000, pds)]


def set_mode(sregs: kvm_sregs, mode: str, cr3: int = PAGE_TABLE_ADDR) -> None:
    """Set ``sregs`` for ``mode`` (validated by :func:`check`).

    ``real``: 16-bit real mode, all segments based at 0 (code below 64 KiB).
    ``protected32``: flat 32-bit protected mode, paging off, every segment
    base 0 and limit 4 GiB, CPL 0, an empty IDT (so any exception ends in a
    triple fault). ``long64``: 64-bit long mode on the page tables at
    ``cr3``, otherwise like ``protected32``.
    """
    if mode == "real":
        for seg in (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
            seg.base, seg.selector = 0, 0
        return
    long = mode == "long64"
    code = kvm_segment(base=0, limit=0xFFFFFFFF, selector=0x08, type=0xB, present=1,
                       dpl=0, db=0 if long else 1, s=1, l=1 if long else 0, g=1)
    data = kvm_segment(base=0, limit=0xFFFFFFFF, selector=0x10, type=0x3, present=1,
                       dpl=0, db=1, s=1, l=0, g=1)
    sregs.cs = code
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
    sregs.cr0 |= CR0_PE  # protected mode
    sregs.idt.base, sregs.idt.limit = 0, 0
    if long:
        sregs.cr3 = cr3
        sregs.cr4 |= CR4_PAE
        sregs.cr0 |= CR0_PE | CR0_PG | CR0_ET | CR0_NE
        sregs.efer |= EFER_LME | EFER_LMA
