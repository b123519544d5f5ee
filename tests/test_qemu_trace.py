"""The trace parser on excerpts of real QEMU 7.2 traces of the disk-trap guest (tests/data/qemu_trace).

The excerpts were cut with tools/trace_excerpt.py from full runs (2 and 3
requests per phase): SeaBIOS's last lines on port 0x402, some kernel-boot
accesses outside every phase, then the guest's marked phases. See the
README next to them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from lab.qemu import trace

DATA = Path(__file__).parent / "data" / "qemu_trace"


def lines(name: str) -> list[str]:
    with gzip.open(DATA / f"{name}.log.gz", "rt", encoding="latin-1") as f:
        return f.readlines()


def debugcon_value(line: str) -> int | None:
    if "name 'isa-debugcon'" not in line:
        return None
    return int(line.split(" value 0x")[1].split()[0], 16)


@pytest.mark.parametrize("name, per_request, kicks", [("ide", 26, 0), ("virtio", 0, 1), ("virtio-noioeventfd", 1, 1)])
def test_counts_per_request_are_whole_and_equal_for_both_counts(name, per_request, kicks):
    t = trace.parse_file(DATA / f"{name}.log.gz")
    assert t.done and not t.errors
    assert [p.label for p in t.phases] == [f"{op} {n}" for n in (2, 3) for op in ("control", "read", "write")]
    for p in t.phases:
        n = int(p.label.split()[1])
        if p.label.startswith("control"):
            assert p.total == 0 and p.interrupts == 0 and p.kicks == 0
        else:
            assert p.total == per_request * n
            assert p.kicks == kicks * n
            assert p.interrupts == n  # one completion interrupt per synchronous request


def test_ide_register_protocol_by_region():
    t = trace.parse_file(DATA / "ide.log.gz")
    assert dict(t.phase("read 3").accesses) == {
        ("ide", "read"): 24, ("ide", "write"): 24, ("bmdma", "write"): 3,
        ("piix-bmdma", "read"): 15, ("piix-bmdma", "write"): 12}
    assert t.phase("read 3").spaces == {"pio": 78}  # IDE is all I/O ports: KVM_EXIT_IO under KVM


def test_virtio_notify_without_ioeventfd_is_one_mmio_write():
    p = trace.parse_file(DATA / "virtio-noioeventfd.log.gz").phase("write 3")
    assert p.spaces == {"mmio": 3} and p.kicks == 3


def test_timer_and_eoi_writes_are_background_not_accesses():
    t = trace.parse_file(DATA / "ide.log.gz")
    control = t.phase("control 3")
    assert control.lapic["timer"] > 0 and control.lapic["eoi"] > 0  # present: time passes in every phase
    assert control.total == 0
    read = t.phase("read 3")
    assert read.lapic["eoi"] >= read.interrupts  # one EOI per disk interrupt, plus the timer's
    assert not any(region == trace.LAPIC_REGION for region, _ in read.accesses)


def test_seabios_lines_are_not_markers():
    t = trace.parse_file(DATA / "ide.log.gz")
    assert t.other_lines and "Booting" in t.other_lines[-1]
    assert t.notes == ["disk sda"]


def test_seabios_line_without_newline_before_the_first_marker():
    """SeaBIOS's last bytes may lack a newline: the marker is what follows the last '@lab '."""
    src = lines("ide")
    values = [debugcon_value(line) for line in src]
    at = next(i for i, v in enumerate(values) if v == ord("@"))
    newline = max(i for i in range(at) if values[i] == 0x0A)
    t = trace.parse_lines(src[:newline] + src[newline + 1:])
    assert t.notes == ["disk sda"] and len(t.phases) == 6


def test_a_trace_that_stops_inside_a_phase_is_an_error():
    src = lines("virtio")
    cut = next(i for i, line in enumerate(src) if "virtio_queue_notify" in line)
    with pytest.raises(trace.TraceError, match="ends inside phase 'read 2'"):
        trace.parse_lines(src[:cut])


def test_guest_errors_and_unreadable_lines():
    marker = "memory_region_ops_write cpu 0 mr 0x1 addr 0x402 value 0x{:x} size 1 name 'isa-debugcon'\n"
    t = trace.parse_lines([marker.format(b) for b in b"@lab error read 2\n"])
    assert t.errors == ["read 2"] and not t.done
    with pytest.raises(trace.TraceError, match="line 1"):
        trace.parse_lines(["memory_region_ops_write cpu zero\n"])


def test_interrupt_messages_vs_local_apic_registers():
    mk = "memory_region_ops_write cpu {} mr 0x1 addr 0x{:x} value 0x0 size 4 name '{}'\n"
    begin = [mk.format(0, 0x402, "isa-debugcon").replace("value 0x0", f"value 0x{b:x}") for b in b"@lab begin x\n"]
    end = [mk.format(0, 0x402, "isa-debugcon").replace("value 0x0", f"value 0x{b:x}") for b in b"@lab end x\n"]
    body = [mk.format(-1, 0xFEE00000, "apic-msi"), mk.format(0, 0xFEE01004, "apic-msi"),
            mk.format(0, 0xFEE000B0, "apic-msi"), mk.format(0, 0xFEE00380, "apic-msi")]
    p = trace.parse_lines(begin + body + end).phase("x")
    assert p.interrupts == 2 and p.lapic == {"eoi": 1, "timer": 1} and p.total == 0


def test_parse_is_a_stream(tmp_path):
    """A generator is enough: the parser never needs the whole file."""
    t = trace.parse_lines(line for line in lines("virtio-noioeventfd"))
    assert t.phase("write 3").total == 3
