"""The guest side of the I/O comparison: one small program per mode.

Each program sends the same N requests of S bytes (the payload the host put
at ``abi.DATA``) to its device, timing the whole run with ``rdtsc``, and
halts. The parameters come from the parameter block at ``abi.PARAMS``, so the
code is the same for every N, S and batch size. The programs run in flat
32-bit protected mode and are built with :mod:`lab.guests.asm` (the same
listing format as the other guests; a test re-assembles them with GNU as).

* :data:`HVM` - per request: write the length to the command register, then
  the payload one dword at a time to the data register: ``1 + S/4`` ``out``s.
* :data:`PV` - per request: fill the record ``{addr, len, status}``, one
  ``out`` of the record's address, check the status the device wrote back.
* :data:`VIRTIO` - per batch: one descriptor per request, the heads into the
  available ring, one store of ``avail.idx``, one ``out`` to the notify port,
  then wait (reading memory, no exit) until ``used.idx`` catches up. The same
  code serves the ioeventfd variant: there the ``out`` never leaves the kernel.
"""

from __future__ import annotations

from lab.devices import abi
from lab.guests import CODE_ADDR, Program
from lab.guests import asm
from lab.guests.asm import Insn, Label

R = asm.REG32
R16 = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}


def _u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def _hex(v: int) -> str:
    return f"{v:#x}"


def _modrm_mem(reg_field: int, base: str | None, disp: int) -> bytes:
    """ModRM (+disp) for ``[disp]`` or ``[base + disp]``, with the shortest displacement, as GNU as picks."""
    if base is None:
        return bytes([0x05 | reg_field << 3]) + _u32(disp)
    b = R[base]
    if b == R["esp"]:
        raise ValueError("esp as a base needs a SIB byte; not used by these guests")
    if disp == 0 and b != R["ebp"]:
        return bytes([reg_field << 3 | b])
    if -128 <= disp <= 127:
        return bytes([0x40 | reg_field << 3 | b, disp & 0xFF])
    return bytes([0x80 | reg_field << 3 | b]) + _u32(disp)


def _mem_text(base: str | None, disp: int) -> str:
    if base is None:
        return f"[{_hex(disp)}]"
    return f"[{base}+{_hex(disp)}]" if disp else f"[{base}]"


def load(reg: str, addr: int, comment: str = "", base: str | None = None) -> Insn:
    """mov reg, dword ptr [base+addr]"""
    if reg == "eax" and base is None:
        code = b"\xa1" + _u32(addr)
    else:
        code = b"\x8b" + _modrm_mem(R[reg], base, addr)
    return Insn(f"mov {reg}, dword ptr {_mem_text(base, addr)}", code, comment)


def store(addr: int, reg: str, comment: str = "", base: str | None = None) -> Insn:
    """mov dword ptr [base+addr], reg"""
    if reg == "eax" and base is None:
        code = b"\xa3" + _u32(addr)
    else:
        code = b"\x89" + _modrm_mem(R[reg], base, addr)
    return Insn(f"mov dword ptr {_mem_text(base, addr)}, {reg}", code, comment)


def store_imm(addr: int, value: int, comment: str = "", base: str | None = None) -> Insn:
    """mov dword ptr [base+addr], imm32"""
    return Insn(f"mov dword ptr {_mem_text(base, addr)}, {_hex(value)}",
                b"\xc7" + _modrm_mem(0, base, addr) + _u32(value), comment)


def store16_indexed(disp: int, index: str, reg16: str, comment: str = "") -> Insn:
    """mov word ptr [index*2+disp], reg16 (SIB with no base)"""
    sib = 0x40 | R[index] << 3 | 0x05  # scale 2, index, no base (disp32)
    return Insn(f"mov word ptr [{index}*2+{_hex(disp)}], {reg16}",
                bytes([0x66, 0x89, R16[reg16] << 3 | 0x04, sib]) + _u32(disp), comment)


def store16(addr: int, reg16: str, comment: str = "") -> Insn:
    if reg16 == "ax":
        raise ValueError("GNU as encodes 'mov [moffs], ax' in its short form; use another register")
    return Insn(f"mov word ptr [{_hex(addr)}], {reg16}", b"\x66\x89" + _modrm_mem(R16[reg16], None, addr), comment)


def cmp16(addr: int, reg16: str, comment: str = "") -> Insn:
    """cmp word ptr [addr], reg16"""
    return Insn(f"cmp word ptr [{_hex(addr)}], {reg16}", b"\x66\x39" + _modrm_mem(R16[reg16], None, addr), comment)


def cmp_imm8(addr: int, value: int, comment: str = "", base: str | None = None) -> Insn:
    """cmp dword ptr [base+addr], imm8 (sign-extended)"""
    return Insn(f"cmp dword ptr {_mem_text(base, addr)}, {value}",
                b"\x83" + _modrm_mem(7, base, addr) + bytes([value & 0xFF]), comment)


def inc_mem(addr: int, comment: str = "") -> Insn:
    return Insn(f"inc dword ptr [{_hex(addr)}]", b"\xff" + _modrm_mem(0, None, addr), comment)


def _rr(op: int, mnemonic: str, dst: str, src: str, comment: str = "") -> Insn:
    return Insn(f"{mnemonic} {dst}, {src}", bytes([op, 0xC0 | R[src] << 3 | R[dst]]), comment)


def test(dst: str, src: str, comment: str = "") -> Insn:
    return _rr(0x85, "test", dst, src, comment)


def cmp(dst: str, src: str, comment: str = "") -> Insn:
    return _rr(0x39, "cmp", dst, src, comment)


def sub(dst: str, src: str, comment: str = "") -> Insn:
    return _rr(0x29, "sub", dst, src, comment)


def add(dst: str, src: str, comment: str = "") -> Insn:
    return _rr(0x01, "add", dst, src, comment)


def xor(dst: str, src: str, comment: str = "") -> Insn:
    return _rr(0x31, "xor", dst, src, comment)


def add_imm8(reg: str, value: int, comment: str = "") -> Insn:
    return Insn(f"add {reg}, {value}", bytes([0x83, 0xC0 | R[reg], value & 0xFF]), comment)


def and_imm32(reg: str, value: int, comment: str = "") -> Insn:
    if reg == "eax":
        raise ValueError("GNU as encodes 'and eax, imm32' in its short form; use another register")
    return Insn(f"and {reg}, {_hex(value)}", bytes([0x81, 0xE0 | R[reg]]) + _u32(value), comment)


def shift(op: str, reg: str, count: int, comment: str = "") -> Insn:
    ext = {"shl": 4, "shr": 5}[op]
    return Insn(f"{op} {reg}, {count}", bytes([0xC1, 0xC0 | ext << 3 | R[reg], count]), comment)


def inc(reg: str, comment: str = "") -> Insn:
    return Insn(f"inc {reg}", bytes([0x40 + R[reg]]), comment)


def dec(reg: str, comment: str = "") -> Insn:
    return Insn(f"dec {reg}", bytes([0x48 + R[reg]]), comment)


def jump(cc: str, label: str, comment: str = "") -> Insn:
    opcode = {"jmp": 0xEB, "jz": 0x74, "jnz": 0x75, "jbe": 0x76}[cc]
    return Insn(f"{cc} {label}", bytes([opcode, 0]), comment, rel8=label)


OUT_DX_EAX = ("out dx, eax", b"\xef")
OUT_DX_AX = ("out dx, ax", b"\x66\xef")
PAUSE = ("pause", b"\xf3\x90")

P = abi.PARAMS


def _start(comment_data: str) -> list:
    return [
        load("esi", P + abi.P_DATA, comment_data),
        load("edi", P + abi.P_COUNT, "edi = requests left"),
        asm.simple(*asm.RDTSC, comment="start time"),
        store(P + abi.P_TSC_START, "eax"),
        store(P + abi.P_TSC_START + 4, "edx"),
    ]


_FINISH = [
    Label("finish"),
    asm.simple(*asm.RDTSC, comment="end time"),
    store(P + abi.P_TSC_END, "eax"),
    store(P + abi.P_TSC_END + 4, "edx"),
]
_HALT = [asm.simple(*asm.HLT, comment="exit: the run is over")]


def _program(name: str, items: list, description: str) -> Program:
    code, listing = asm.assemble(items, CODE_ADDR)
    return Program(name, "protected32", CODE_ADDR, code, tuple(listing), description)


HVM = _program("io_hvm", [
    *_start("esi -> payload"),
    Label("next_request"),
    test("edi", "edi"),
    jump("jz", "finish"),
    load("ecx", P + abi.P_SIZE, "ecx = request size in bytes"),
    asm.mov_reg32("eax", "ecx"),
    asm.mov_dx_imm16(abi.HVM_CMD, "protected32", "command register"),
    asm.simple(*OUT_DX_EAX, comment="exit: 'a request of eax bytes follows'"),
    shift("shr", "ecx", 2, "ecx = dwords to send"),
    asm.mov_dx_imm16(abi.HVM_DATA, "protected32", "data register"),
    Label("next_dword"),
    load("eax", 0, "the next 4 bytes of payload", base="esi"),
    asm.simple(*OUT_DX_EAX, comment="exit: one dword to the device"),
    add_imm8("esi", 4),
    dec("ecx"),
    jump("jnz", "next_dword"),
    inc_mem(P + abi.P_DONE, "one more request done"),
    dec("edi"),
    jump("jmp", "next_request"),
    *_FINISH, *_HALT,
], "emulated device: length to a command register, payload a dword at a time (1 + S/4 exits per request)")


PV = _program("io_pv", [
    *_start("esi -> payload"),
    load("ecx", P + abi.P_SIZE, "ecx = request size in bytes"),
    asm.mov_imm32("ebx", abi.PV_RECORD, "ebx -> request record"),
    store(abi.R_LEN, "ecx", "record.len = size", base="ebx"),
    store_imm(abi.R_ADDR + 4, 0, "record.addr, upper half", base="ebx"),
    Label("next_request"),
    test("edi", "edi"),
    jump("jz", "finish"),
    store(abi.R_ADDR, "esi", "record.addr = this request's data", base="ebx"),
    store_imm(abi.R_STATUS, abi.PV_PENDING, "record.status = pending", base="ebx"),
    asm.mov_reg32("eax", "ebx"),
    asm.mov_dx_imm16(abi.PV_PORT, "protected32", "the PV request port"),
    asm.simple(*OUT_DX_EAX, comment="exit: 'handle the record at eax'"),
    cmp_imm8(abi.R_STATUS, 0, "did the device say done?", base="ebx"),
    jump("jz", "ok"),
    inc_mem(P + abi.P_ERRORS, "count an error"),
    Label("ok"),
    inc_mem(P + abi.P_DONE, "one more request done"),
    add("esi", "ecx", "esi -> next request's data"),
    dec("edi"),
    jump("jmp", "next_request"),
    *_FINISH, *_HALT,
], "PV: one port write per request, carrying the address of {addr, len, status}")


VIRTIO = _program("io_virtio", [
    *_start("esi -> payload"),
    xor("ebp", "ebp", "ebp = avail.idx (free-running)"),
    Label("next_batch"),
    test("edi", "edi"),
    jump("jz", "finish"),
    load("ecx", P + abi.P_BATCH, "ecx = batch size"),
    cmp("ecx", "edi"),
    jump("jbe", "fill"),
    asm.mov_reg32("ecx", "edi", "the last batch may be shorter"),
    Label("fill"),
    sub("edi", "ecx"),
    Label("fill_one"),
    asm.mov_reg32("ebx", "ebp"),
    and_imm32("ebx", abi.QUEUE_SIZE - 1, "slot = idx % queue size"),
    asm.mov_reg32("eax", "ebx"),
    shift("shl", "eax", 4, "eax = slot * 16 (descriptor offset)"),
    store(abi.VQ_DESC, "esi", "desc.addr = this request's data", base="eax"),
    store_imm(abi.VQ_DESC + 4, 0, "desc.addr, upper half", base="eax"),
    load("edx", P + abi.P_SIZE),
    store(abi.VQ_DESC + 8, "edx", "desc.len = size", base="eax"),
    store_imm(abi.VQ_DESC + 12, 0, "desc.flags = 0, desc.next = 0", base="eax"),
    store16_indexed(abi.VQ_AVAIL + 4, "ebx", "bx", "avail.ring[slot] = descriptor slot"),
    add("esi", "edx", "esi -> next request's data"),
    inc("ebp"),
    dec("ecx"),
    jump("jnz", "fill_one"),
    store16(abi.VQ_AVAIL + 2, "bp", "publish the batch: avail.idx (one store)"),
    asm.mov_dx_imm16(abi.VIRTIO_NOTIFY, "protected32", "notify port"),
    xor("eax", "eax", "queue 0"),
    asm.simple(*OUT_DX_AX, comment="exit (or eventfd): one kick per batch"),
    inc_mem(P + abi.P_KICKS),
    Label("wait_used"),
    cmp16(abi.VQ_USED + 2, "bp", "used.idx caught up with avail.idx?"),
    jump("jz", "next_batch"),
    asm.simple(*PAUSE, comment="no: spin, reading memory (no exit)"),
    jump("jmp", "wait_used"),
    *_FINISH,
    store(P + abi.P_DONE, "ebp", "requests done"),
    *_HALT,
], "virtio: a batch of descriptors, one store of avail.idx, one notification per batch")

PROGRAMS = {"hvm": HVM, "pv": PV, "virtio": VIRTIO}


def expected_exits(mode: str, count: int, size: int, batch: int) -> int:
    """Exits to the VMM's userspace the model predicts for N requests (the final hlt aside).

    ``hvm``: ``1 + S/4`` per request (command, then one per dword); ``pv``: one
    per request; ``virtio``: one per batch, ``ceil(N/B)``; ``virtio_ioeventfd``:
    none - the kicks end in the kernel.
    """
    if mode == "hvm":
        return count * (1 + size // 4)
    if mode == "pv":
        return count
    if mode == "virtio":
        return -(-count // batch)
    if mode == "virtio_ioeventfd":
        return 0
    raise ValueError(f"unknown mode {mode!r}")
