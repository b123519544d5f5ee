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
import os
import signal
import subprocess
import sys
import time

import pytest

from lab.paths import REPO_ROOT

pytestmark = pytest.mark.kvm

#: "At once". Under QEMU TCG (make test-hwvirt) every instruction is emulated: lab.qemu.hwvirt sets 1 s.
LIMIT_S = float(os.environ.get("LAB_SIGINT_LIMIT_S", "0.100"))
#: How much longer a child process may take than here: an emulated guest (make test-hwvirt) is
#: many times slower, and slower still beside the other emulator; lab.qemu.hwvirt sets it.
TIMEOUT_SCALE = float(os.environ.get("LAB_TIMEOUT_SCALE", "1"))

PRELUDE = """
import json, os, signal, sys, threading, time
# A Jupyter kernel installs Python's SIGINT handler whatever its parent did; a Python started by a parent
# that ignores SIGINT (a job started with '&', nohup) installs none. Do what the kernel does.
signal.signal(signal.SIGINT, signal.default_int_handler)
from lab import kvm, guests
from lab.kvm.memory import LIVE_MAPPINGS

# The latency measured is the VMM's, not the test run's: on a 2-core machine
# the other pytest worker and the spinning vCPU compete for the CPUs, so give
# this process (its threads inherit it) the scheduler's preference, as an
# interactive kernel usually has over background work. Without root, as is.
try:
    os.nice(-10)
except PermissionError:
    pass

def state():
    with open("/proc/self/maps") as f:
        maps = sum(1 for line in f if "kvm" in line) + len(LIVE_MAPPINGS)
    # The test's own strike timer is not counted: a Ctrl-C that interrupts joining it makes CPython mark it
    # stopped while its thread is still ending (threading._wait_for_tstate_lock), so a later join returns early.
    threads = sum(1 for t in threading.enumerate() if t.name != "ctrl-c-strike")
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": threads, "maps": maps}

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
    exits.run(["pio_user"], repeat=10_000, iterations=20_000)
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
        out, err = proc.communicate(timeout=60 * TIMEOUT_SCALE)
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
    # A latency is a sample on a busy 2-core machine (the other xdist worker, the spinning vCPU): one
    # late sample is noise, a late second sample is the VMM. Both runs must stop and leak nothing.
    latencies = []
    for _ in range(2):
        r = run_case(CASES[case], signal_from_child=case == "signal on another thread")
        assert r["outcome"] == "KeyboardInterrupt", r
        assert r["after"] == r["before"], f"{case}: leaked {r}"
        latencies.append(r["latency"])
        if r["latency"] < LIMIT_S:
            break
    assert min(latencies) < LIMIT_S, \
        f"{case}: KeyboardInterrupt {', '.join(f'{x * 1000:.0f}' for x in latencies)} ms after SIGINT"


# --------------------------------------------------------------------------- in this process


def test_the_kick_signal_is_the_one_the_chapter_names():
    from lab.kvm import kick

    base, offset = kick.KICK_SIGNAL_NAME.split("+")
    assert kick.KICK_SIGNAL == getattr(signal, base) + int(offset)


def test_a_signal_whose_handler_returns_does_not_stop_the_run():
    """SIGUSR1 with a handler that only counts: the guest is kicked out, resumed, and finishes its loop."""
    import threading

    from lab import guests, kvm
    from lab.bench import exits as bench_exits

    seen = []
    old_handler = signal.signal(signal.SIGUSR1, lambda *a: seen.append(1))
    n = 20_000
    program = guests.exit_loop("pio_user", n)
    stop = threading.Event()

    def pester():
        while not stop.wait(0.02):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    try:
        with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
            vm.load(program)
            vcpu = vm.create_vcpu(entry=program.origin)
            t = threading.Thread(target=pester)
            t.start()
            try:
                ex = bench_exits.run_resuming(vcpu, "pio_user", 30)
            finally:
                stop.set()
                t.join()
    finally:
        signal.signal(signal.SIGUSR1, old_handler)
    assert seen, "no signal arrived during the run; make the loop longer"
    assert isinstance(ex.exit, kvm.exits.Hlt) and ex.resumed == n
    previous = signal.set_wakeup_fd(-1)
    assert previous == -1, "the run left its wakeup fd installed"


def test_kick_from_another_thread_stops_the_run():
    import threading

    from lab import guests, kvm

    with kvm.open() as system, system.create_vm(memory_kib=64) as vm:
        vm.load(guests.SPIN)
        vcpu = vm.create_vcpu(entry=guests.SPIN.origin)
        assert vcpu.kick() is False  # not running: nothing to kick
        timer = threading.Timer(0.3, vcpu.kick)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(kvm.RunInterrupted, match="kicked"):
            vcpu.run(timeout_s=30)
        timer.join()
        assert time.monotonic() - t0 < 5
        vm.load(guests.CPUID_ONCE)
        vcpu.jump(guests.CPUID_ONCE.origin)
        assert vcpu.run(timeout_s=5).reason == "hlt"  # usable again


RANDOM_MOMENTS = """
import random, statistics, traceback
from collections import Counter
from lab.bench import exits
from lab.devices import live

# Which phase the main thread is in when the signal is sent (read from its stack by the
# timer thread, just before the kill), by the innermost function of lab that names one.
PHASES = {"create_vcpu": "vCPU creation", "create_vm": "VM creation", "open": "VM creation",
          "run_once": "run", "run_until": "run", "run_resuming": "run", "running": "run"}

def phase_of(frame):
    names = [f.name for f in traceback.extract_stack(frame) if "/lab/" in f.filename]
    if "run_io" in names and any(t.name == "vhost-worker" for t in threading.enumerate()):
        return "I/O worker"
    for name in reversed(names):
        if name in PHASES:
            return PHASES[name]
    return "other"

def benchmark():
    exits.run(["pio_user"], repeat=1, iterations=200)

def io_run():
    live.run_io("virtio_ioeventfd", 64, 64, 8, timeout_s=30)

# Unbroken runs of the body, sampled from another thread: for each phase, the moments (seconds after
# the body's start) at which the main thread was seen in it, and the longest duration. Runs are added
# until every phase the body goes through was seen a few times (a short phase, like creating the VM
# natively, can fall between two samples of one run, the more so on a loaded machine). The strikes
# below aim at these moments, so every phase is reached on a fast host and on a slow one (under QEMU
# TCG creating a VM alone takes longer than a whole run does natively).
def moments_seen(body, phases, runs=30, enough=5):
    seen, longest = {}, 0.0
    for _ in range(runs):
        done = threading.Event()
        t0 = time.monotonic()
        def sample():
            while not done.is_set():
                seen.setdefault(phase_of(sys._current_frames()[main]), []).append(time.monotonic() - t0)
                time.sleep(0.0001)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            body()
        finally:
            done.set()
            sampler.join()
        longest = max(longest, time.monotonic() - t0)
        if all(len(seen.get(p, ())) >= enough for p in phases):
            break
    return seen, longest

random.seed(1)
main = threading.main_thread().ident
BODY_PHASES = {benchmark: ("VM creation", "vCPU creation", "run"),
               io_run: ("VM creation", "vCPU creation", "run", "I/O worker")}
aims = {body: moments_seen(body, phases) for body, phases in BODY_PHASES.items()}
leaks, other, hits, interrupted = [], [], Counter(), 0
late = []  # how long after its moment each strike came (starting the timer thread, waking it): aimed earlier by that
# 300 strikes, and more (up to 1,000) while a phase has not been hit: on a loaded machine a short phase
# can be missed by 300 moments that the timer thread wakes up late for.
ALL_PHASES = {p for phases in BODY_PHASES.values() for p in phases}
i = -1
while (i := i + 1) < 300 or (i < 1000 and not ALL_PHASES <= set(hits)):
    body = benchmark if i % 2 == 0 else io_run
    seen, duration = aims[body]
    # One strike in three at any moment of the body, the others at a moment where a phase was seen: the
    # phase of this body hit least so far.
    phases = [p for p in BODY_PHASES[body] if p in seen] or sorted(seen)
    at = (random.uniform(0, duration) if i % 3 == 0
          else random.choice(seen[min(phases, key=lambda p: hits[p])]))
    at = max(0.0, at - (statistics.median(late[-20:]) if late else 0.0))
    before = state()
    def strike():
        late.append(time.monotonic() - started - at)
        hits[phase_of(sys._current_frames()[main])] += 1
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(at, strike)
    timer.name = "ctrl-c-strike"
    try:
        try:
            started = time.monotonic()
            timer.start()  # on a busy machine the signal may land before start() returns
            body()
        finally:
            timer.join()
            time.sleep(0.001)  # a signal sent after the body ended is handled here at the latest
    except KeyboardInterrupt:
        interrupted += 1
    except BaseException as exc:
        other.append(f"{type(exc).__name__}: {exc}")
    timer.join()  # again: a Ctrl-C that landed in the first join cut it short
    after = state()
    if after != before:
        leaks.append((before, after))
print(json.dumps({"leaks": leaks[:3], "n_leaks": len(leaks), "other": other[:3], "phases": hits,
                  "interrupted": interrupted, "strikes": i}), flush=True)
"""

#: The phases a Ctrl-C must have hit at least once in :func:`test_ctrl_c_at_any_moment_leaks_nothing`.
PHASES = ("VM creation", "vCPU creation", "run", "I/O worker")


def test_ctrl_c_at_any_moment_leaks_nothing():
    """Ctrl-C 300 times (more, up to 1,000, while a phase was missed) at random moments of a benchmark and of
    an I/O run with its vhost worker thread (opening /dev/kvm, creating the VM and the vCPU, arming the
    watchdog, running), the moments drawn from where unbroken runs of each were seen to spend their time:
    every time a
    KeyboardInterrupt and nothing else, and no fd, thread or mapping left behind (each resource is its
    owner's before a Ctrl-C can strike: kick.sigint_deferred; an ioctl interrupted by the signal runs
    Python's handler, then is made again: _libc.ioctl). The phases hit are printed, and each is hit."""
    out = subprocess.run([sys.executable, "-c", PRELUDE + RANDOM_MOMENTS], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300 * TIMEOUT_SCALE)  # under load more strikes may be needed
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print("Ctrl-C hits per phase:", r["phases"])
    assert r["other"] == [], r
    assert r["n_leaks"] == 0, r
    # each a KeyboardInterrupt (so the test tested something); one dropped inside a finalizer shows in stderr
    assert 300 <= r["strikes"] and r["interrupted"] == r["strikes"], (r, out.stderr[-3000:])
    missed = [p for p in PHASES if not r["phases"].get(p)]
    assert not missed, f"no Ctrl-C landed in {missed}: {r['phases']}"


def test_collecting_a_closed_system_leaves_ctrl_c_alone(monkeypatch):
    """A closed System's __del__ does nothing: were it to hold a Ctrl-C back (sigint_deferred), the
    KeyboardInterrupt would be raised inside __del__, where Python reports and drops it."""
    from lab import kvm

    system = kvm.open()
    system.close()
    calls = []
    monkeypatch.setattr(signal, "signal", lambda *a: calls.append(a))
    system.__del__()
    assert calls == []
