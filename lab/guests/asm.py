"""A tiny x86 "assembler" for the book's guests: each instruction is written
once as GNU assembler text (Intel syntax) together with its machine bytes.

It is deliberately not a real assembler: it knows only the handful of
instruction forms the guests use, and every helper returns both the text the
reader sees and the bytes the CPU runs. ``tests/test_guests_bytes.py``
assembles the text with GNU ``as`` and checks the bytes match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REG32 = {"eax": 0, "ecx": 1, "edx": 2, "ebx": 3, "esp": 4, "ebp": 5, "esi": 6, "edi": 7}


@dataclass(frozen=True)
class Insn:
    text: str
    code: bytes
    comment: str = ""
    #: a label this instruction jumps to with an 8-bit relative displacement (last byte)
    rel8: str | None = None


@dataclass(frozen=True)
class Label:
    name: str


def _u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def _u16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "little")


def mov_imm32(reg: str, value: int, comment: str = "") -> Insn:
    return Insn(f"mov {reg}, {value:#x}", bytes([0xB8 + REG32[reg]]) + _u32(value), comment)


def mov_reg32(dst: str, src: str, comment: str = "") -> Insn:
    return Insn(f"mov {dst}, {src}", bytes([0x89, 0xC0 | REG32[src] << 3 | REG32[dst]]), comment)


def store_abs32(addr: int, src: str, comment: str = "", mode: str = "protected32") -> Insn:
    """mov dword ptr [addr], src.

    32-bit code: ``eax`` uses the short moffs form (as GNU as does), other
    registers ModRM disp32. 64-bit code: ModRM+SIB absolute disp32 (plain
    ModRM disp32 would mean rip-relative there).
    """
    if mode == "long64":
        code = bytes([0x89, 0x04 | REG32[src] << 3, 0x25]) + _u32(addr)
    elif src == "eax":
        code = b"\xa3" + _u32(addr)
    else:
        code = bytes([0x89, 0x05 | REG32[src] << 3]) + _u32(addr)
    return Insn(f"mov dword ptr [{addr:#x}], {src}", code, comment)


def mov_dx_imm16(value: int, mode: str, comment: str = "") -> Insn:
    prefix = b"\x66" if mode in ("protected32", "long64") else b""
    return Insn(f"mov dx, {value:#x}", prefix + b"\xba" + _u16(value), comment)


def mov_al_imm8(value: int, comment: str = "") -> Insn:
    return Insn(f"mov al, {value:#x}", bytes([0xB0, value & 0xFF]), comment)


def simple(text: str, code: bytes, comment: str = "") -> Insn:
    return Insn(text, code, comment)


def jnz(label: str, comment: str = "") -> Insn:
    return Insn(f"jnz {label}", b"\x75\x00", comment, rel8=label)


def jmp_self(comment: str = "") -> Insn:
    return Insn("jmp .", b"\xeb\xfe", comment)


RDTSC = ("rdtsc", b"\x0f\x31")
CPUID = ("cpuid", b"\x0f\xa2")
VMCALL = ("vmcall", b"\x0f\x01\xc1")
VMMCALL = ("vmmcall", b"\x0f\x01\xd9")
HLT = ("hlt", b"\xf4")
UD2 = ("ud2", b"\x0f\x0b")
OUT_DX_AL = ("out dx, al", b"\xee")
XOR_EAX_EAX = ("xor eax, eax", b"\x31\xc0")
DEC_EBP = ("dec ebp", b"\x4d")  # 32-bit only: 0x4d is a REX prefix in 64-bit code
DEC_EBP_64 = ("dec ebp", b"\xff\xcd")
STORE_AL_AT_EBX = ("mov byte ptr [ebx], al", b"\x88\x03")
STORE_AL_AT_RBX = ("mov byte ptr [rbx], al", b"\x88\x03")
JMP_EAX = ("jmp eax", b"\xff\xe0")
JMP_RAX = ("jmp rax", b"\xff\xe0")


def assemble(items: list, origin: int) -> tuple[bytes, list[tuple[int, bytes, str, str, str]]]:
    """Lay the items out from ``origin``; returns the code and a listing
    (address, bytes, label, text, comment) with rel8 jumps resolved."""
    labels: dict[str, int] = {}
    addr = origin
    for item in items:
        if isinstance(item, Label):
            labels[item.name] = addr
        else:
            addr += len(item.code)
    code = bytearray()
    listing = []
    addr = origin
    pending_label = ""
    for item in items:
        if isinstance(item, Label):
            pending_label = item.name
            continue
        data = item.code
        if item.rel8 is not None:
            disp = labels[item.rel8] - (addr + len(data))
            if not -128 <= disp <= 127:
                raise ValueError(f"jump to {item.rel8} does not fit in 8 bits")
            data = data[:-1] + (disp & 0xFF).to_bytes(1, "little")
        listing.append((addr, data, pending_label, item.text, item.comment))
        pending_label = ""
        code += data
        addr += len(data)
    return bytes(code), listing
