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
* :data:`VIRTIO_STREAM` - the same descriptors, but the guest does not wait
  for each batch: it goes on filling while a descriptor is free, and kicks
  only when the device asked for it, by ``VIRTQ_USED_F_NO_NOTIFY`` in
  ``used.flags`` or, with ``VIRTIO_F_EVENT_IDX`` (``P_EVENT_IDX`` = 1), by the
  ``vring_need_event`` test on ``avail_event``. A device that polls while busy
  can only be left unkicked by a driver that adds while it is busy.

The guests are x86 code and rely on x86's ordering, said where it matters:
loads are not reordered with other loads (reading ``used.idx`` first is an
acquire), stores not with other stores (storing ``avail.idx`` last is a
release), but a load may pass an earlier store, so ``mfence`` stands between
publishing ``avail.idx`` and reading the device's setting.
"""

from __future__ import annotations

from lab.devices import abi
from lab.guests import CODE_ADDR, Program, asm
from lab.guests.asm import (
    Item,
    Label,
    add_imm8,
    and_imm32,
    cmp16,
    cmp_imm,
    cmp_imm8,
    inc_mem,
    jump,
    load,
    load16,
    shift,
    store,
    store16,
    store16_indexed,
    store_imm,
)

P = abi.PARAMS


def _start(comment_data: str) -> list[Item]:
    return [
        load("esi", P + abi.P_DATA, comment_data),
        load("edi", P + abi.P_COUNT, "edi = requests left"),
        asm.simple(*asm.RDTSC, comment="start time"),
        store(P + abi.P_TSC_START, "eax"),
        store(P + abi.P_TSC_START + 4, "edx"),
    ]


_FINISH: list[Item] = [
    Label("finish"),
    asm.simple(*asm.RDTSC, comment="end time"),
    store(P + abi.P_TSC_END, "eax"),
    store(P + abi.P_TSC_END + 4, "edx"),
]
_HALT: list[Item] = [asm.simple(*asm.HLT, comment="exit: the run is over")]


def _program(name: str, items: list[Item], description: str) -> Program:
    code, listing = asm.assemble(items, CODE_ADDR)
    return Program(name, "protected32", CODE_ADDR, code, tuple(listing), description)


HVM = _program("io_hvm", [
    *_start("esi -> payload"),
    Label("next_request"),
    asm.op("test", "edi", "edi"),
    jump("jz", "finish"),
    load("ecx", P + abi.P_SIZE, "ecx = request size in bytes"),
    asm.op("mov", "eax", "ecx"),
    asm.mov_dx_imm16(abi.HVM_CMD, "protected32", "command register"),
    asm.simple(*asm.OUT_DX_EAX, comment="exit: 'a request of eax bytes follows'"),
    shift("shr", "ecx", 2, "ecx = dwords to send"),
    asm.mov_dx_imm16(abi.HVM_DATA, "protected32", "data register"),
    Label("next_dword"),
    load("eax", 0, "the next 4 bytes of payload", base="esi"),
    asm.simple(*asm.OUT_DX_EAX, comment="exit: one dword to the device"),
    add_imm8("esi", 4),
    asm.inc_dec("dec", "ecx"),
    jump("jnz", "next_dword"),
    inc_mem(P + abi.P_DONE, "one more request done"),
    asm.inc_dec("dec", "edi"),
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
    asm.op("test", "edi", "edi"),
    jump("jz", "finish"),
    store(abi.R_ADDR, "esi", "record.addr = this request's data", base="ebx"),
    store_imm(abi.R_STATUS, abi.PV_PENDING, "record.status = pending", base="ebx"),
    asm.op("mov", "eax", "ebx"),
    asm.mov_dx_imm16(abi.PV_PORT, "protected32", "the PV request port"),
    asm.simple(*asm.OUT_DX_EAX, comment="exit: 'handle the record at eax'"),
    cmp_imm8(abi.R_STATUS, 0, "did the device say done?", base="ebx"),
    jump("jz", "ok"),
    inc_mem(P + abi.P_ERRORS, "count an error"),
    Label("ok"),
    inc_mem(P + abi.P_DONE, "one more request done"),
    asm.op("add", "esi", "ecx", "esi -> next request's data"),
    asm.inc_dec("dec", "edi"),
    jump("jmp", "next_request"),
    *_FINISH, *_HALT,
], "PV: one port write per request, carrying the address of {addr, len, status}")


def _descriptor(comment_slot: str) -> list[Item]:
    """Descriptor ``ebp % QUEUE_SIZE`` for the request at esi, its head in the ring; esi to the next request."""
    return [
        asm.op("mov", "ebx", "ebp"),
        and_imm32("ebx", abi.QUEUE_SIZE - 1, comment_slot),
        asm.op("mov", "eax", "ebx"),
        shift("shl", "eax", 4, "eax = slot * 16 (descriptor offset)"),
        store(abi.VQ_DESC, "esi", "desc.addr = this request's data", base="eax"),
        store_imm(abi.VQ_DESC + 4, 0, "desc.addr, upper half", base="eax"),
        load("edx", P + abi.P_SIZE),
        store(abi.VQ_DESC + 8, "edx", "desc.len = size", base="eax"),
        store_imm(abi.VQ_DESC + 12, 0, "desc.flags = 0, desc.next = 0", base="eax"),
        store16_indexed(abi.VQ_AVAIL + 4, "ebx", "bx", "avail.ring[slot] = descriptor slot"),
        asm.op("add", "esi", "edx", "esi -> next request's data"),
    ]


def _next_batch(when_done: str) -> list[Item]:
    """Label ``next_batch``: ecx = the next batch's size (the last may be shorter), taken off edi; to
    ``when_done`` when no request is left."""
    return [
        Label("next_batch"),
        asm.op("test", "edi", "edi"),
        jump("jz", when_done),
        load("ecx", P + abi.P_BATCH, "ecx = batch size"),
        asm.op("cmp", "ecx", "edi"),
        jump("jbe", "fill"),
        asm.op("mov", "ecx", "edi", "the last batch may be shorter"),
        Label("fill"),
        asm.op("sub", "edi", "ecx"),
    ]


def _kick(comment: str) -> list[Item]:
    """One notification of queue 0 (an ``out`` to the notify port), counted in ``P_KICKS``."""
    return [
        asm.mov_dx_imm16(abi.VIRTIO_NOTIFY, "protected32", "notify port"),
        asm.op("xor", "eax", "eax", "queue 0"),
        asm.simple(*asm.OUT_DX_AX, comment=comment),
        inc_mem(P + abi.P_KICKS),
    ]


def _wait_used(label: str, then: str) -> list[Item]:
    """At ``label``, spin reading memory (no exit) until used.idx caught up with avail.idx; then to ``then``."""
    return [
        Label(label),
        cmp16(abi.VQ_USED + 2, "bp", "used.idx caught up with avail.idx?"),
        jump("jz", then),
        asm.simple(*asm.PAUSE, comment="no: spin, reading memory (no exit)"),
        jump("jmp", label),
    ]


VIRTIO = _program("io_virtio", [
    *_start("esi -> payload"),
    asm.op("xor", "ebp", "ebp", "ebp = avail.idx (free-running)"),
    *_next_batch(when_done="finish"),
    Label("fill_one"),
    *_descriptor("slot = idx % queue size"),
    asm.inc_dec("inc", "ebp"),
    asm.inc_dec("dec", "ecx"),
    jump("jnz", "fill_one"),
    store16(abi.VQ_AVAIL + 2, "bp", "publish the batch: avail.idx (one store)"),
    *_kick("exit (or eventfd): one kick per batch"),
    *_wait_used("wait_used", then="next_batch"),
    *_FINISH,
    store(P + abi.P_DONE, "ebp", "requests done"),
    *_HALT,
], "virtio: a batch of descriptors, one store of avail.idx, one notification per batch")


VIRTIO_STREAM = _program("io_virtio_stream", [
    *_start("esi -> payload"),
    asm.op("xor", "ebp", "ebp", "ebp = avail.idx (free-running)"),
    *_next_batch(when_done="drain"),
    Label("fill_one"),
    load16("eax", abi.VQ_USED + 2, "eax = used.idx (a load: x86 keeps it before the loads after it)"),
    asm.op("mov", "edx", "ebp"),
    asm.op("sub", "edx", "eax"),
    and_imm32("edx", 0xFFFF, "edx = requests the device still holds"),
    cmp_imm("edx", abi.QUEUE_SIZE),
    jump("jb", "slot_free", "is the descriptor of this slot back?"),
    asm.simple(*asm.PAUSE, comment="no: the queue is full, wait reading memory (no exit)"),
    jump("jmp", "fill_one"),
    Label("slot_free"),
    *_descriptor("slot = idx % queue size"),
    asm.inc_dec("inc", "ebp"),
    asm.inc_dec("dec", "ecx"),
    jump("jnz", "fill_one"),
    store16(abi.VQ_AVAIL + 2, "bp", "publish the batch: avail.idx (x86 keeps stores in order: after the ring)"),
    asm.simple(*asm.MFENCE, comment="avail.idx visible before the device's setting is read"),
    load("ecx", P + abi.P_KICKED_IDX, "ecx = avail.idx at the last decision (old)"),
    store(P + abi.P_KICKED_IDX, "ebp"),
    load("eax", P + abi.P_EVENT_IDX, "EVENT_IDX negotiated?"),
    asm.op("test", "eax", "eax"),
    jump("jnz", "event_idx"),
    load16("eax", abi.VQ_USED, "eax = used.flags"),
    asm.simple(*asm.TEST_AL_1, comment="VIRTQ_USED_F_NO_NOTIFY set?"),
    jump("jnz", "next_batch", "yes: the device is polling, no kick"),
    jump("jmp", "kick"),
    Label("event_idx"),
    load16("eax", abi.VQ_AVAIL_EVENT, "eax = avail_event"),
    asm.op("mov", "edx", "ebp"),
    asm.op("sub", "edx", "eax"),
    asm.inc_dec("dec", "edx"),
    and_imm32("edx", 0xFFFF, "edx = (new - avail_event - 1) mod 2^16"),
    asm.op("mov", "ebx", "ebp"),
    asm.op("sub", "ebx", "ecx"),
    and_imm32("ebx", 0xFFFF, "ebx = (new - old) mod 2^16"),
    asm.op("cmp", "edx", "ebx", "vring_need_event: did avail.idx pass avail_event?"),
    jump("jae", "next_batch", "no: no kick"),
    Label("kick"),
    *_kick("exit (into KVM, to the ioeventfd): the kick"),
    jump("jmp", "next_batch"),
    *_wait_used("drain", then="finish"),
    *_FINISH,
    store(P + abi.P_DONE, "ebp", "requests done"),
    *_HALT,
], "virtio without waiting per batch: fill while a descriptor is free, kick only when the device asks")

#: The guest program of each kind of path (:data:`lab.devices.live.PATHS` says which mode runs which).
PROGRAMS = {"hvm": HVM, "pv": PV, "virtio": VIRTIO, "virtio_stream": VIRTIO_STREAM}


def expected_exits(mode: str, count: int, size: int, batch: int) -> int:
    """Exits to the VMM's userspace the model predicts for N requests (the final hlt aside).

    ``hvm``: ``1 + S/4`` per request (command, then one per dword); ``pv``: one
    per request; ``virtio``: one per batch, ``ceil(N/B)``; ``virtio_ioeventfd``,
    ``virtio_no_notify``, ``virtio_event_idx``: none - the kicks end in the kernel
    (how many kicks the last two make depends on how busy the device was).
    """
    if mode == "hvm":
        return count * (1 + size // 4)
    if mode == "pv":
        return count
    if mode == "virtio":
        return -(-count // batch)
    if mode in ("virtio_ioeventfd", "virtio_no_notify", "virtio_event_idx"):
        return 0
    raise ValueError(f"unknown mode {mode!r}")
