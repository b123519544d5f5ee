"""Ctrl-C during a run: SIGINT stops a guest that never exits at once, with KeyboardInterrupt, leaking nothing.

Each case runs in a child process (what JupyterLab's "Interrupt kernel" and
Ctrl-C signal): the child prints ``running`` just before the run, the parent
waits a moment so that the vCPU is inside ``KVM_RUN``, sends SIGINT and
compares the time the child caught ``KeyboardInterrupt`` (CLOCK_MONOTONIC is
shared by all processes) with the time it sent the signal. The child also
reports its open fds, threads and guest mappings before and after.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from lab.paths import REPO_ROOT

pytestmark = pytest.mark.kvm

LIMIT_S = 0.100

PRELUDE = """
import json, os, signal, sys, threading, time
from lab import kvm, guests
from lab.kvm.memory import LIVE_MAPPINGS

def state():
    with open("/proc/self/maps") as f:
        maps = sum(1 for line in f if "kvm" in line) + len(LIVE_MAPPINGS)
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(), "maps": maps}

def spin(timeout_s=30):
    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.SPIN)
        vcpu = vm.create_vcpu(mode="protected32", entry=guests.SPIN.origin)
        print("running", flush=True)
        vcpu.run(timeout_s=timeout_s)

def report(body):
    before = state()
    try:
        body()
        out = {"outcome": "returned"}
    except KeyboardInterrupt:
        out = {"outcome": "KeyboardInterrupt", "caught": time.monotonic()}
    except BaseException as exc:
        out = {"outcome": type(exc).__name__, "message": str(exc)}
    out.update(before=before, after=state())
    print(json.dumps(out), flush=True)
"""

CASES = {
    "spinning guest": "report(spin)",
    # The signal lands on a thread other than the vCPU's: the wakeup fd still kicks the vCPU.
    "signal on another thread": """
def body():
    def hit():
        sys.stdin.readline()  # the parent says when
        print(json.dumps({"sent": time.monotonic()}), flush=True)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    threading.Thread(target=hit, daemon=True).start()
    spin()
report(body)
""",
    "long benchmark": """
from lab.bench import exits
def body():
    print("running", flush=True)
    exits.run(["pio_user"], repeat=10_000, iterations=20_000, vendor="intel")
report(body)
""",
    "device model with a host thread": """
from lab.devices import guests as io_guests, live
io_guests.PROGRAMS["virtio"] = guests.SPIN
def body():
    print("running", flush=True)
    live.run_io("virtio_ioeventfd", 8, 16, 4, timeout_s=30)
report(body)
""",
}


def run_case(code: str, *, signal_from_child: bool = False) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + code], cwd=REPO_ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "running", (line, proc.stderr.read() if proc.poll() is not None else "")
        time.sleep(0.5)  # well inside KVM_RUN (the benchmark: in the middle of its runs)
        if signal_from_child:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            sent = json.loads(proc.stdout.readline())["sent"]
        else:
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = json.loads(out.strip().splitlines()[-1])
    result["latency"] = result.get("caught", float("inf")) - sent
    result["stderr"] = err
    return result


@pytest.mark.parametrize("case", list(CASES))
def test_sigint_stops_the_run_at_once_and_leaks_nothing(case):
    r = run_case(CASES[case], signal_from_child=case == "signal on another thread")
    assert r["outcome"] == "KeyboardInterrupt", r
    assert r["latency"] < LIMIT_S, f"{case}: KeyboardInterrupt {r['latency'] * 1000:.0f} ms after SIGINT"
    assert r["after"] == r["before"], f"{case}: leaked {r}"
