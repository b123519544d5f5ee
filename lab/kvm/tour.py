"""The KVM chapter's live walk through the mini VMM, step by step.

:func:`hello_steps` performs, one call at a time, what every VMM does to run
a guest (open ``/dev/kvm``, create a VM, give it memory, create a vCPU, set
its registers, run it, handle its exits) and returns one row per step: what
was done, which ioctl did it, and what came back. :func:`bad_guest_rows`
runs the guests that misbehave and returns how each one ended. Both are also
recorded by ``python -m lab record`` (resource ``tour``) so that a reader
without KVM sees what a real host answered.
"""

from __future__ import annotations

import time

from lab import guests
from lab.kvm import errors
from lab.kvm.constants import KVM_CAP_IOEVENTFD, KVM_CAP_NR_MEMSLOTS, KVM_CAP_USER_MEMORY


def hello_steps(device: str = "/dev/kvm") -> list[dict]:
    """Run :data:`lab.guests.HELLO` step by step; one dict (section, step, action, ioctl, result) per step."""
    from lab import kvm

    rows: list[dict] = []

    def add(action: str, ioctl: str, result: str) -> None:
        rows.append({"section": "hello", "step": len(rows) + 1, "action": action, "ioctl": ioctl, "result": result})

    with kvm.open(device) as system:
        add("/dev/kvm を開く", "open + KVM_GET_API_VERSION", f"API version {system.api_version()}")
        caps = {name: system.check_extension(cap) for name, cap in
                (("KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY), ("KVM_CAP_NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS),
                 ("KVM_CAP_IOEVENTFD", KVM_CAP_IOEVENTFD))}
        add("機能を問い合わせる", "KVM_CHECK_EXTENSION", ", ".join(f"{k}={v}" for k, v in caps.items()))
        add("vCPU 共有領域の大きさ", "KVM_GET_VCPU_MMAP_SIZE", f"{system.vcpu_mmap_size()} bytes")
        with system.create_vm() as vm:
            add("VM を作る", "KVM_CREATE_VM", "VM の fd を得た")
            slot = vm.add_memory(0, 64 * 1024)
            add("ゲストのメモリを与える", "mmap + KVM_SET_USER_MEMORY_REGION",
                f"ゲスト物理 {slot.guest_addr:#x}-{slot.end - 1:#x} ({slot.size // 1024} KiB)")
            vm.load(guests.HELLO)
            add("プログラムを置く", "(メモリへの書き込み)", f"{len(guests.HELLO.code)} バイトを {guests.HELLO.origin:#x} へ")
            vcpu = vm.create_vcpu(mode="real", entry=guests.HELLO.origin)
            sregs = vcpu.get_sregs()
            add("vCPU を作りレジスタを設定する", "KVM_CREATE_VCPU + mmap, KVM_SET_SREGS, KVM_SET_REGS",
                f"リアルモード: CS.base={sregs.cs.base:#x}, RIP={vcpu.get_regs().rip:#x}")
            serial = b""
            for _ in range(16):
                ex = vcpu.run(timeout_s=5)
                if isinstance(io := ex.exit, kvm.exits.IoOut):
                    serial += io.data
                    add("実行する", "KVM_RUN",
                        f"exit: io out port={io.port:#x} size={io.size} data={io.data!r} (rip={ex.rip:#x})")
                else:
                    add("実行する", "KVM_RUN", f"exit: {ex.reason} (rip={ex.rip:#x})")
                    break
            add("シリアルポートに届いた文字", "-", repr(serial.decode("ascii", "replace")))
    add("すべて閉じる", "munmap + close", "fd とマッピングを解放した")
    return rows


#: (program, mode, what the reader should expect)
BAD_GUESTS = [
    (guests.TRIPLE_FAULT, "IDT のない状態で未定義命令 (ud2) を実行"),
    (guests.JUMP_UNMAPPED, "メモリのないアドレスへジャンプ"),
    (guests.SPIN, "ずっと終わらない (jmp .)"),
]


def bad_guest_rows(timeout_s: float = 1.0, vendor: str | None = None) -> list[dict]:
    """Run each misbehaving guest (and one hypercall); one row per guest with how it ended."""
    from lab import kvm
    from lab.bench import exits as bench_exits

    rows = []
    for program, what in BAD_GUESTS:
        t0 = time.perf_counter()
        try:
            with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
                vm.load(program)
                ex = vm.create_vcpu(mode=program.mode, entry=program.origin).run(timeout_s=timeout_s)
            outcome, message = f"exit {ex.reason}", str(ex.as_dict())
        except errors.GuestError as exc:
            outcome, message = type(exc).__name__, str(exc)
        rows.append({"section": "errors", "step": len(rows) + 1, "action": f"{program.name}: {what}",
                     "ioctl": outcome, "result": f"{message} [{time.perf_counter() - t0:.1f} s]"})
    vendor = vendor or bench_exits.cpu_vendor()
    insn = guests.HYPERCALL_INSN.get(vendor, guests.asm.VMCALL)[0]
    ok, reason = bench_exits.probe_hypercall("protected32", vendor, timeout_s=timeout_s)
    rows.append({"section": "errors", "step": len(rows) + 1,
                 "action": f"hypercall_once: 保護モードで {insn} を 1 回",
                 "ioctl": "ok" if ok else "unavailable", "result": reason or "ハイパーコールは完了した"})
    return rows
