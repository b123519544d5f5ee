"""A tiny table-driven x86 "assembler" for the book's guests.

Each instruction is written once as GNU assembler text (Intel syntax)
together with its machine bytes. It is deliberately not a real assembler: it
knows only the instruction forms the guests use, each from a small opcode
table, and every helper returns both the text the reader sees and the bytes
the CPU runs. ``tests/test_guests_bytes.py`` and
``tests/test_devices_guests.py`` assemble the text with GNU ``as`` and check
that the bytes match; where GNU as would pick a shorter form than the one
encoded here, the helper refuses the operands.
"""

from __future__ import annotations

from dataclasses import dataclass

REG32 = {"eax": 0, "ecx": 1, "edx": 2, "ebx": 3, "esp": 4, "ebp": 5, "esi": 6, "edi": 7}
REG16 = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}


@dataclass(frozen=True)
class Insn:
    text: str
    code: bytes
    comment: str = ""
    #: a label this instruction jumps to; the displacement is its last byte (8 bits) or, where
    #: :func:`assemble` found the label too far, its last four (the near form, as GNU as relaxes it)
    rel8: str | None = None


@dataclass(frozen=True)
class Label:
    name: str


Item = Insn | Label
#: One listing row: address, bytes, label, assembly, comment.
Line = tuple[int, bytes, str, str, str]

# --------------------------------------------------------------------------- opcode tables

#: Instructions without operands to choose: text -> bytes.
FIXED = {
    "rdtsc": b"\x0f\x31",
    "cpuid": b"\x0f\xa2",
    "vmcall": b"\x0f\x01\xc1",
    "vmmcall": b"\x0f\x01\xd9",
    "hlt": b"\xf4",
    "ud2": b"\x0f\x0b",
    "sti": b"\xfb",
    "pause": b"\xf3\x90",
    "mfence": b"\x0f\xae\xf0",
    "test al, 1": b"\xa8\x01",
    "out dx, al": b"\xee",
    "out dx, ax": b"\x66\xef",
    "out dx, eax": b"\xef",
    "xor eax, eax": b"\x31\xc0",
    "dec ebp": b"\x4d",  # 32-bit only: 0x4d is a REX prefix in 64-bit code
    "mov byte ptr [ebx], al": b"\x88\x03",
    "mov byte ptr [rbx], al": b"\x88\x03",
    "jmp eax": b"\xff\xe0",
    "jmp rax": b"\xff\xe0",
}
#: ``op r/m32, r32`` (register to register): mnemonic -> opcode.
REG_REG = {"mov": 0x89, "add": 0x01, "sub": 0x29, "xor": 0x31, "cmp": 0x39, "test": 0x85}
#: Short conditional and unconditional jumps to a label: mnemonic -> opcode (rel8 follows).
JUMPS = {"jmp": 0xEB, "jz": 0x74, "jnz": 0x75, "jb": 0x72, "jae": 0x73, "jbe": 0x76}
#: ``op r32, imm8`` shifts: mnemonic -> the ModRM reg field of opcode 0xC1.
SHIFTS = {"shl": 4, "shr": 5}
#: ``inc``/``dec r32``: mnemonic -> base of the one-byte opcode (32-bit code only).
INC_DEC = {"inc": 0x40, "dec": 0x48}


def _fixed(text: str) -> tuple[str, bytes]:
    return text, FIXED[text]


RDTSC, CPUID, VMCALL, VMMCALL, HLT, UD2, PAUSE, STI = map(_fixed, ("rdtsc", "cpuid", "vmcall", "vmmcall", "hlt",
                                                                    "ud2", "pause", "sti"))
MFENCE, TEST_AL_1 = _fixed("mfence"), _fixed("test al, 1")
OUT_DX_AL, OUT_DX_AX, OUT_DX_EAX = map(_fixed, ("out dx, al", "out dx, ax", "out dx, eax"))
XOR_EAX_EAX, DEC_EBP = _fixed("xor eax, eax"), _fixed("dec ebp")
DEC_EBP_64 = ("dec ebp", b"\xff\xcd")
STORE_AL_AT_EBX, STORE_AL_AT_RBX = _fixed("mov byte ptr [ebx], al"), _fixed("mov byte ptr [rbx], al")
JMP_EAX, JMP_RAX = _fixed("jmp eax"), _fixed("jmp rax")


def _u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def _u16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "little")


# --------------------------------------------------------------------------- register and immediate forms


def simple(text: str, code: bytes, comment: str = "") -> Insn:
    return Insn(text, code, comment)


def op(mnemonic: str, dst: str, src: str, comment: str = "") -> Insn:
    """``mnemonic dst, src`` on two 32-bit registers (:data:`REG_REG`)."""
    return Insn(f"{mnemonic} {dst}, {src}", bytes([REG_REG[mnemonic], 0xC0 | REG32[src] << 3 | REG32[dst]]), comment)


def mov_imm32(reg: str, value: int, comment: str = "") -> Insn:
    return Insn(f"mov {reg}, {value:#x}", bytes([0xB8 + REG32[reg]]) + _u32(value), comment)


def mov_dx_imm16(value: int, mode: str, comment: str = "") -> Insn:
    prefix = b"\x66" if mode in ("protected32", "long64") else b""
    return Insn(f"mov dx, {value:#x}", prefix + b"\xba" + _u16(value), comment)


def mov_al_imm8(value: int, comment: str = "") -> Insn:
    return Insn(f"mov al, {value:#x}", bytes([0xB0, value & 0xFF]), comment)


def add_imm8(reg: str, value: int, comment: str = "") -> Insn:
    return Insn(f"add {reg}, {value}", bytes([0x83, 0xC0 | REG32[reg], value & 0xFF]), comment)


def and_imm32(reg: str, value: int, comment: str = "") -> Insn:
    if reg == "eax":
        raise ValueError("GNU as encodes 'and eax, imm32' in its short form; use another register")
    return Insn(f"and {reg}, {value:#x}", bytes([0x81, 0xE0 | REG32[reg]]) + _u32(value), comment)


def cmp_imm(reg: str, value: int, comment: str = "") -> Insn:
    """``cmp reg, imm`` in the form GNU as picks: imm8 when it fits, else the short eax form or imm32."""
    if -128 <= value <= 127:
        code = bytes([0x83, 0xF8 | REG32[reg], value & 0xFF])
    elif reg == "eax":
        code = b"\x3d" + _u32(value)
    else:
        code = bytes([0x81, 0xF8 | REG32[reg]]) + _u32(value)
    return Insn(f"cmp {reg}, {value:#x}", code, comment)


def shift(mnemonic: str, reg: str, count: int, comment: str = "") -> Insn:
    return Insn(f"{mnemonic} {reg}, {count}", bytes([0xC1, 0xC0 | SHIFTS[mnemonic] << 3 | REG32[reg], count]), comment)


def inc_dec(mnemonic: str, reg: str, comment: str = "") -> Insn:
    """``inc``/``dec`` of a 32-bit register, one byte (32-bit code only)."""
    return Insn(f"{mnemonic} {reg}", bytes([INC_DEC[mnemonic] + REG32[reg]]), comment)


def jump(mnemonic: str, label: str, comment: str = "") -> Insn:
    """A short jump (:data:`JUMPS`) to ``label``; :func:`assemble` fills in the displacement."""
    return Insn(f"{mnemonic} {label}", bytes([JUMPS[mnemonic], 0]), comment, rel8=label)


def jnz(label: str, comment: str = "") -> Insn:
    """``jnz label``: :func:`jump` with the loop's usual condition."""
    return jump("jnz", label, comment)


def jmp_self(comment: str = "") -> Insn:
    return Insn("jmp .", b"\xeb\xfe", comment)


# --------------------------------------------------------------------------- memory operands


def _modrm_mem(reg_field: int, base: str | None, disp: int, mode: str = "protected32") -> bytes:
    """ModRM (+SIB, +disp) for ``[disp]`` or ``[base + disp]``, with the displacement GNU as picks.

    In 64-bit code a plain ModRM disp32 would mean rip-relative: ``[disp]`` there needs a SIB byte.
    """
    if base is None:
        if mode == "long64":
            return bytes([0x04 | reg_field << 3, 0x25]) + _u32(disp)
        return bytes([0x05 | reg_field << 3]) + _u32(disp)
    b = REG32[base]
    if b == REG32["esp"]:
        raise ValueError("esp as a base needs a SIB byte; not used by these guests")
    if disp == 0 and b != REG32["ebp"]:
        return bytes([reg_field << 3 | b])
    if -128 <= disp <= 127:
        return bytes([0x40 | reg_field << 3 | b, disp & 0xFF])
    return bytes([0x80 | reg_field << 3 | b]) + _u32(disp)


def _mem_text(base: str | None, disp: int) -> str:
    if base is None:
        return f"[{disp:#x}]"
    return f"[{base}+{disp:#x}]" if disp else f"[{base}]"


def load(reg: str, addr: int, comment: str = "", base: str | None = None) -> Insn:
    """mov reg, dword ptr [base+addr]"""
    code = b"\xa1" + _u32(addr) if reg == "eax" and base is None else b"\x8b" + _modrm_mem(REG32[reg], base, addr)
    return Insn(f"mov {reg}, dword ptr {_mem_text(base, addr)}", code, comment)


def store(addr: int, reg: str, comment: str = "", base: str | None = None, mode: str = "protected32") -> Insn:
    """mov dword ptr [base+addr], reg (``eax`` to an absolute address: the short moffs form, as GNU as does)."""
    if reg == "eax" and base is None and mode != "long64":
        code = b"\xa3" + _u32(addr)
    else:
        code = b"\x89" + _modrm_mem(REG32[reg], base, addr, mode)
    return Insn(f"mov dword ptr {_mem_text(base, addr)}, {reg}", code, comment)


def store_imm(addr: int, value: int, comment: str = "", base: str | None = None) -> Insn:
    """mov dword ptr [base+addr], imm32"""
    return Insn(f"mov dword ptr {_mem_text(base, addr)}, {value:#x}",
                b"\xc7" + _modrm_mem(0, base, addr) + _u32(value), comment)


def load16(reg: str, addr: int, comment: str = "") -> Insn:
    """movzx reg, word ptr [addr]: a 16-bit index, zero-extended"""
    return Insn(f"movzx {reg}, word ptr [{addr:#x}]", b"\x0f\xb7" + _modrm_mem(REG32[reg], None, addr), comment)


def store16(addr: int, reg16: str, comment: str = "") -> Insn:
    """mov word ptr [addr], reg16"""
    if reg16 == "ax":
        raise ValueError("GNU as encodes 'mov [moffs], ax' in its short form; use another register")
    return Insn(f"mov word ptr [{addr:#x}], {reg16}", b"\x66\x89" + _modrm_mem(REG16[reg16], None, addr), comment)


def store16_indexed(disp: int, index: str, reg16: str, comment: str = "") -> Insn:
    """mov word ptr [index*2+disp], reg16 (SIB with no base)"""
    sib = 0x40 | REG32[index] << 3 | 0x05  # scale 2, index, no base (disp32)
    return Insn(f"mov word ptr [{index}*2+{disp:#x}], {reg16}",
                bytes([0x66, 0x89, REG16[reg16] << 3 | 0x04, sib]) + _u32(disp), comment)


def cmp16(addr: int, reg16: str, comment: str = "") -> Insn:
    """cmp word ptr [addr], reg16"""
    return Insn(f"cmp word ptr [{addr:#x}], {reg16}", b"\x66\x39" + _modrm_mem(REG16[reg16], None, addr), comment)


def cmp_imm8(addr: int, value: int, comment: str = "", base: str | None = None) -> Insn:
    """cmp dword ptr [base+addr], imm8 (sign-extended)"""
    return Insn(f"cmp dword ptr {_mem_text(base, addr)}, {value}",
                b"\x83" + _modrm_mem(7, base, addr) + bytes([value & 0xFF]), comment)


def inc_mem(addr: int, comment: str = "") -> Insn:
    """inc dword ptr [addr]"""
    return Insn(f"inc dword ptr [{addr:#x}]", b"\xff" + _modrm_mem(0, None, addr), comment)


# --------------------------------------------------------------------------- layout


def _near(code: bytes) -> bytes:
    """The near (rel32) form of a short jump: ``jmp`` is E9, a ``jcc`` 0F 80+cc; displacement zeroed."""
    return b"\xe9" + bytes(4) if code[0] == 0xEB else bytes([0x0F, code[0] + 0x10]) + bytes(4)


def _relax(items: list[Item], origin: int) -> tuple[list[Item], dict[str, int]]:
    """Give each jump the short form, and the near one where its label is out of reach, as GNU as does:
    lengthening one jump can push another out of reach, so repeat until nothing changes."""
    items = list(items)
    while True:
        labels: dict[str, int] = {}
        ends: list[int] = []
        addr = origin
        for item in items:
            if isinstance(item, Label):
                labels[item.name] = addr
            else:
                addr += len(item.code)
            ends.append(addr)
        grown = False
        for i, item in enumerate(items):
            if isinstance(item, Insn) and item.rel8 is not None and len(item.code) == 2:
                if not -128 <= labels[item.rel8] - ends[i] <= 127:
                    items[i] = Insn(item.text, _near(item.code), item.comment, item.rel8)
                    grown = True
        if not grown:
            return items, labels


def assemble(items: list[Item], origin: int) -> tuple[bytes, list[Line]]:
    """Lay the items out from ``origin``; returns the code and a listing
    (address, bytes, label, text, comment) with the jumps resolved."""
    items, labels = _relax(items, origin)
    code = bytearray()
    listing: list[Line] = []
    addr = origin
    pending_label = ""
    for item in items:
        if isinstance(item, Label):
            pending_label = item.name
            continue
        data = item.code
        if item.rel8 is not None:
            disp = labels[item.rel8] - (addr + len(data))
            width = 1 if len(data) == 2 else 4
            data = data[:-width] + (disp & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        listing.append((addr, data, pending_label, item.text, item.comment))
        pending_label = ""
        code += data
        addr += len(data)
    return bytes(code), listing
