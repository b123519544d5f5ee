"""The reader-driven cells of the KVM, VMExit and virtio chapters, without KVM (recorded) and with it (live)."""

from __future__ import annotations

import re

import pytest
from synthetic import FORWARD_ID, REVERSED_ID

from lab.book import kvm as book_kvm
from lab.book.chapters import kvm as kvm_chapter
from lab.book.exits_view import Floor, Measurement, SideBySide
from lab.book.ja import backends as backend
from lab.book.ja import comparisons as compare
from lab.book.ja import messages as vmm_words
from lab.book.virtio_view import Paths, ring_view
from lab.devices.driver import DriverQueue
from lab.devices.memory import GuestMemory
from lab.devices.models import VirtioDevice
from lab.devices.virtqueue import Layout
from lab.paths import REPO_ROOT

CHAPTERS = ["chapters/kvm/kvm.md", "chapters/kvm/vmexit.md", "chapters/io/virtio.md"]


@pytest.fixture()
def recorded_only(monkeypatch):
    monkeypatch.setenv("LAB_FORCE_RECORDED", "1")


def test_back_ends_are_named_right():
    # a PVM host runs in a VM, but its KVM is not nested; only VT-x / AMD-V inside a VM is
    assert not backend.is_nested("kvm_pvm", True) and backend.is_nested("kvm_intel", True)
    assert not backend.is_nested("kvm_amd", False)
    nested_word = backend.backend_short("kvm_amd", True).removesuffix(backend.backend_short("kvm_amd", False)).strip()
    assert nested_word and nested_word in backend.backend_ja("kvm_intel", True)
    assert nested_word not in backend.backend_ja("kvm_pvm", True) + backend.backend_ja("kvm_amd", False)
    assert "kvm_pvm" in backend.backend_ja("kvm_pvm", True) and "kvm_foo" in backend.backend_ja("kvm_foo", False)


def test_comparisons_turn_with_the_numbers():
    assert "倍かかりました" in compare.cost_ja("A", 3, "B", 1)
    assert "より安く" in compare.cost_ja("A", 1, "B", 3)
    assert "ほぼ同じ" in compare.cost_ja("A", 1.01, "B", 1)
    assert "倍速く" in compare.rate_ja("A", 2, "B", 1) and "より遅く" in compare.rate_ja("A", 1, "B", 2)
    assert compare.pct_ja("Python", 120, "C", 100).endswith("20 % 遅くなりました")
    assert compare.spaced("PVのVMMは") == "PV の VMM は"


@pytest.mark.parametrize("message, expected", [
    ("the guest triple-faulted at rip=0x1000: an exception ...", "rip=0x1000 でトリプルフォールト"),
    ("KVM internal error at rip=0xd0000000, suberror 1: emulation failure", "サブエラー 1"),
    ("the guest did not exit within 1 s (rip=0x1000, 0 exits handled on the way); ...", "1 秒以内に exit しなかった"),
    ("vmcall at rip=0x1002 never completed: KVM_RUN did not return within 2 s and",
     "rip=0x1002 の vmcall は完了しなかった"),
])
def test_older_recordings_english_is_given_its_code(message, expected):
    assert vmm_words.legacy_record(message) is not None
    assert expected in vmm_words.say(None, message)


def test_an_unknown_message_is_kept_and_marked():
    assert vmm_words.say(None, "something new") == "VMM のメッセージ(原文のまま): something new"
    assert "no.such.code" in vmm_words.say({"code": "no.such.code", "params": {}})


def _all_codes() -> dict:
    import lab.bench.exits  # noqa: F401 - each module defines its errors' codes
    import lab.devices.live  # noqa: F401
    import lab.devices.models  # noqa: F401
    import lab.devices.virtqueue  # noqa: F401
    from lab.kvm.errors import CODES

    return CODES


def test_every_error_code_has_a_japanese_message():
    missing = sorted(set(_all_codes()) - set(vmm_words.MESSAGES_JA))
    assert not missing, f"codes without a Japanese message in lab.book.ja.messages.MESSAGES_JA: {missing}"
    stale = sorted(set(vmm_words.MESSAGES_JA) - set(_all_codes()))
    assert not stale, f"Japanese messages for codes nothing raises: {stale}"


def _broken_queue(build):
    from lab.devices.driver import DriverQueue
    from lab.devices.memory import GuestMemory
    from lab.devices.virtqueue import DeviceQueue, Layout

    mem = GuestMemory(bytearray(0x10000))
    layout = Layout.contiguous(0x1000, 8)
    build(mem, DriverQueue(mem, layout), layout)
    with pytest.raises(Exception) as info:
        DeviceQueue(mem, layout).pop()
    return info.value


def _loop(mem, drv, layout):
    drv.add([(0x8000, 4, False)])
    drv.write_descriptor(0, 0x8000, 4, 1, 0)
    drv.publish()


def _outside(mem, drv, layout):
    drv.add([(0xFFF0, 0x20, False)])
    drv.publish()


def _index(mem, drv, layout):
    mem.set_u16(layout.avail + 2, 9)


@pytest.mark.parametrize("build, values", [
    (_loop, ["0 → 0"]), (_outside, ["記述子 0", "0xfff0", "0x10010"]), (_index, ["0 から 9", "9 件"]),
])
def test_a_raised_error_is_said_in_japanese_with_its_values(build, values):
    error = _broken_queue(build)
    text = vmm_words.say(error.record())
    assert all(v in text for v in values), text
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", text), f"English left in: {text}"


def test_guest_errors_are_said_from_their_record():
    from lab.kvm import exits

    shutdown = exits.error_for(exits.Exit(exits.Shutdown(), 0x1234))
    assert "rip=0x1234 でトリプルフォールト" in vmm_words.say(shutdown.record())
    internal = exits.error_for(exits.Exit(exits.Internal(1, (0xAA,)), 0x10))
    assert "サブエラー 1" in vmm_words.say(internal.record())


def test_the_bad_guests_table_shows_the_pages_host_and_the_comparison_every_host(synthetic_roots):
    page = kvm_chapter.bad_guests(synthetic_roots["both"])
    assert "ホスト" not in page.frame.columns and REVERSED_ID in page.note.body  # the newer host is the page's
    assert FORWARD_ID not in page.note.body and "GuestShutdown" in set(page.frame["結末"])
    every = kvm_chapter.bad_guests_every_host(synthetic_roots["both"])
    assert set(every.frame["ホスト"]) == {FORWARD_ID, REVERSED_ID}
    assert FORWARD_ID in every.note.body and REVERSED_ID in every.note.body


def test_hypercall_words_follow_each_recorded_host(synthetic_roots):
    hypercall_words = kvm_chapter.hypercall_words
    forward, reversed_ = hypercall_words(synthetic_roots["forward"]), hypercall_words(synthetic_roots["reversed"])
    assert FORWARD_ID in forward and REVERSED_ID in reversed_ and forward.replace(FORWARD_ID, "") != \
        reversed_.replace(REVERSED_ID, "").replace("vmmcall", "vmcall")
    page = hypercall_words(synthetic_roots["both"])
    assert REVERSED_ID in page and FORWARD_ID not in page  # the text speaks of the page's host only
    both = kvm_chapter.hypercall_words_every_host(synthetic_roots["both"])
    assert FORWARD_ID in both and REVERSED_ID in both  # the comparison covers every recorded host


def test_exits_cells_show_every_recorded_host(recorded_only, synthetic_roots):
    m = Measurement("cpuid", root=synthetic_roots["both"])
    shown = m.show()
    assert not m.live and len(shown.frame) == 2
    assert all(any(h in cell for cell in shown.frame["ホスト"]) for h in (FORWARD_ID, REVERSED_ID))
    side = SideBySide(root=synthetic_roots["reversed"])
    assert "-20 %" in repr(side.show())  # pio_user: Python 12000, C 15000 cycles in the reversed fixture
    floor = Floor(root=synthetic_roots["both"])
    assert not floor.native_ok and len(floor.show().frame) == 2


def test_all_kinds_table_shows_every_recorded_host(synthetic_roots):
    root = synthetic_roots["both"]
    shown = book_kvm.exits(live=False, root=root)
    hosts = {h.split("(")[0] for h in shown.frame["ホスト"]}
    assert hosts == {FORWARD_ID, REVERSED_ID}
    assert FORWARD_ID in shown.note.body and REVERSED_ID in shown.note.body
    cells = dict(zip(shown.frame["ホスト"].str.split("(").str[0], shown.frame["ホスト"], strict=False))
    assert cells[REVERSED_ID] == f"{REVERSED_ID}({backend.backend_short('kvm_amd', True)})"
    assert cells[FORWARD_ID] == f"{FORWARD_ID}({backend.backend_short('kvm_pvm', True)})"
    fig = book_kvm.plot_recorded(root)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 4  # two hosts, two modes each
    assert sum(t.startswith(f"{REVERSED_ID}(") and backend.backend_short("kvm_amd", True) in t for t in legend) == 2


def test_paths_falls_back_to_the_nearest_recorded_setting(recorded_only, synthetic_roots):
    exact = Paths(batch=8, size=64, root=synthetic_roots["forward"]).show()
    near = Paths(batch=16, size=100, root=synthetic_roots["forward"]).show()
    assert set(near.frame["バッチ"]) == {1, 8} and set(exact.frame["バッチ"]) == {1, 8}
    assert near.note.body.startswith(exact.note.body) and len(near.note.body) > len(exact.note.body)


def test_ring_view_reads_guest_memory_at_each_step():
    mem = GuestMemory(bytearray(0x4000))
    layout = Layout.contiguous(0x1000, 4)
    driver, device = DriverQueue(mem, layout), VirtioDevice(mem, layout)
    mem.write(0x3000, b"abcd")
    driver.add([(0x3000, 4, False)])
    assert ring_view(mem, layout).tables["rings"].loc[0, "avail.idx"] == 0
    driver.publish()
    assert ring_view(mem, layout).tables["rings"].loc[0, "avail.idx"] == 1
    device.notify()
    after = ring_view(mem, layout).tables
    assert after["rings"].loc[0, "used.idx"] == 1 and after["descriptors"].loc[0, "addr"] == "0x3000"
    device.close()


@pytest.mark.parametrize("path", CHAPTERS)
def test_the_visible_cells_call_the_api(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(REPO_ROOT / path)
    visible = [c.source for c in nb.cells if c.cell_type == "code"
               and "remove-cell" not in c.metadata.get("tags", []) and "remove-input" not in c.metadata.get("tags", [])]
    code = "\n".join(visible)
    needed = {"chapters/kvm/kvm.md": ["kvm.open()", "create_vm(", "add_memory(", "create_vcpu(", ".run_until(",
                                      "guests.hello("],
              "chapters/kvm/vmexit.md": ["measure_kind(", "reference.compare(", "native.loop_cycles(",
                                         "iterations, repeat"],
              "chapters/io/virtio.md": ["driver.add(", "driver.publish()", "device.notify()", "driver.used()",
                                        "bench_io.run("]}[path]
    assert all(n in code for n in needed), [n for n in needed if n not in code]
    long = [s for s in visible if len(s.splitlines()) > 16]
    if path == "chapters/kvm/kvm.md":  # the one deliberate exception: the raw ioctl loop (tests/test_kvm_raw_loop.py)
        long = [s for s in long if "fcntl.ioctl(vcpu_fd, nr.KVM_RUN" not in s]
    assert not long, long
