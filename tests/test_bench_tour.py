"""The KVM chapter's tour: recorded as machine values, put into words by the book layer."""

from __future__ import annotations

import json
import re

import pytest

from lab.bench import harness
from lab.bench import tour as bench_tour
from lab.book import kvm as book_kvm

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_recorded_tour_holds_machine_values_only():
    rec = harness.load_measured("tour")
    for col in ("action", "ioctl", "outcome", "values", "message"):
        texts = [t for t in rec[col].dropna()]
        assert not [t for t in texts if JAPANESE.search(t)], f"Japanese text in tour.csv column {col}"
    for v in rec["values"]:
        assert isinstance(json.loads(v), dict)
    assert set(rec["action"]) <= set(bench_tour.HELLO_ACTIONS + bench_tour.ERROR_ACTIONS)


def test_the_book_puts_the_recording_into_words():
    rec = harness.load_measured("tour")
    hello = book_kvm.tour_words(rec[rec["section"] == "hello"])
    assert hello.loc[0, "action"] == "/dev/kvm を開く" and hello.loc[0, "result"] == "API version 12"
    assert "12288 バイト" in hello["result"].tolist()
    assert "exit: io out port=0x3f8 size=1 data=b'H' (rip=0x1006)" in hello["result"].tolist()
    errors = book_kvm.tour_words(rec[rec["section"] == "errors"])
    spin = errors[errors["outcome"] == "RunTimeout"].iloc[0]
    assert spin["action"].startswith("spin: ") and spin["result"].endswith("[1.0 s]")


@pytest.mark.kvm
def test_live_tour_steps_and_their_words():
    steps = bench_tour.hello_steps()
    assert [s.action for s in steps][:3] == ["open", "check_extension", "vcpu_mmap_size"]
    assert steps[0].values == {"api_version": 12}
    serial = next(s for s in steps if s.action == "serial")
    assert serial.values == {"text": "Hi\n"}
    frame = bench_tour.to_frame(steps, {"host_id": "intel-00000000", "recorded_at": "2026-11-27T00:00:00+00:00"})
    words = book_kvm.tour_words(frame)
    assert words.iloc[-1]["result"] == "fd とマッピングを解放した"
