"""lab.virt against a real libvirtd with QEMU/KVM (qemu:///system), checked with virsh.

Marked ``libvirtd``: skipped with the reason where no daemon answers (start it
with ``sudo tools/libvirt-daemons.sh``), a failure under
``LAB_REQUIRE_LIVE=libvirtd``. Every domain and volume is named
``labtest-<token>-...``; the module ends by asking ``virsh list --all`` and
the storage pools that nothing of this run is left.

The domains have no operating system: SeaBIOS runs, finds no bootable disk
and waits, which is enough for a real KVM domain in the state "running"
with CPU time. They have no NIC or QEMU's user-mode NIC, never a libvirt
network (the ``default`` network would start a bridge on the host).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import say

pytestmark = pytest.mark.libvirtd

URI = "qemu:///system"
RUN_PREFIX = f"labtest-{secrets.token_hex(2)}-"


def virsh(*args: str, check: bool = True) -> str:
    """Run the virsh command line as an independent client of the same daemon."""
    proc = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def dominfo(name: str) -> dict[str, str]:
    out = virsh("dominfo", name)
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}


def virsh_names() -> list[str]:
    return [n for n in virsh("list", "--all", "--name").split() if n]


@pytest.fixture(scope="module")
def virt():
    from lab import virt as module

    return module


@pytest.fixture(scope="module")
def conn(virt, request):
    if shutil.which("virsh") is None:
        pytest.skip("virsh is not installed (Debian: libvirt-clients)")
    with virt.connect(URI) as c:
        pool_before = virt.connection.BOOK_POOL in virsh("pool-list", "--name").split()
        say(request, f"[lab.virt] test_virt_live.py runs against {c.uri} (driver {c.driver}, "
                     f"libvirt {c.library_version}, hypervisor {c.hypervisor_version}); names {RUN_PREFIX}*")
        yield c
        left = virt.leftovers(c, RUN_PREFIX)
        names = [n for n in virsh_names() if n.startswith(RUN_PREFIX)]
        say(request, f"[lab.virt] after the live tests: virsh list --all shows {names or 'no'} test domains; "
                     f"libvirt reports {left}")
        assert names == [] and left == {"domains": [], "volumes": []}, f"left behind on {URI}: {names} {left}"
        pool = virt.connection.BOOK_POOL
        if not pool_before and pool in virsh("pool-list", "--name").split():
            # Another xdist worker's session may be using the book's transient pool right now: a session
            # never destroys a pool that holds volumes. Only this module's volumes, or an empty pool
            # nobody holds, would be this module's leak.
            volumes = virsh("vol-list", "--pool", pool).split()
            assert not [v for v in volumes if v.startswith(RUN_PREFIX)], f"this module's volumes left in {pool}"
            assert any(v.endswith((".qcow2", ".raw", ".img")) for v in volumes), \
                f"the transient pool {pool} is still active and empty: a session left it behind"


@pytest.fixture
def session(virt, conn):
    s = virt.Session(conn, prefix=RUN_PREFIX)
    yield s
    s.close()


def test_kvm_domain_lifecycle_seen_by_virsh(virt, session):
    spec, vol = session.machine("life", disk_mib=16, bus="virtio")
    assert spec.domain_type == "kvm" and spec.disks[0].bus == "virtio" and spec.nic is None
    out = subprocess.run(["qemu-img", "info", vol.path], capture_output=True, text=True, check=True).stdout
    assert "file format: qcow2" in out

    dom = session.define(spec)
    assert dom.name in virsh_names()
    assert dominfo(dom.name)["State"] == "shut off"

    dom.start()
    time.sleep(0.3)  # let SeaBIOS run a little, so that CPU time is visible
    info = dom.info()
    seen = dominfo(dom.name)
    assert info.state == "running" and seen["State"] == "running"
    assert info.cpu_time_s and info.cpu_time_s > 0
    assert float(seen["CPU time"].rstrip("s")) > 0
    assert seen["Persistent"] == "yes" and int(seen["Id"]) == info.id
    assert dom.name in virsh("list", "--name").split(), "virsh list (running only) shows it"

    dom.suspend()
    assert virsh("domstate", dom.name).strip() == "paused"
    dom.resume()
    assert virsh("domstate", dom.name).strip() == "running"

    dom.snapshot_create("s1")
    assert "s1" in virsh("snapshot-list", dom.name, "--name").split()
    dom.snapshot_revert("s1")
    assert dom.state() == "running"
    dom.snapshot_delete("s1")
    assert virsh("snapshot-list", dom.name, "--name").split() == []

    dom.destroy()
    assert dominfo(dom.name)["State"] == "shut off"
    dom.undefine()
    assert dom.name not in virsh_names()
    session.close()
    assert not os.path.exists(vol.path), "the qcow2 volume is deleted by the cleanup"


def test_libvirt_fills_in_the_rest_and_the_spec_reads_it_back(session):
    spec, _ = session.machine("readback", nic="virtio")
    dom = session.define(spec)
    back = dom.spec()
    assert back.machine and back.machine.startswith("pc"), "libvirt chose a machine type"
    assert back.replace(machine=None) == spec
    xml = virsh("dumpxml", dom.name)
    assert "<emulator>" in xml and "type='user'" in xml and "<model type='virtio'/>" in xml


def test_emulated_devices_run_too(session):
    spec, _ = session.machine("emul", bus="virtio", nic="virtio")
    dom = session.define(spec.with_family("emulated")).start()
    xml = virsh("dumpxml", dom.name)
    assert "bus='ide'" in xml and "<model type='e1000'/>" in xml
    assert dominfo(dom.name)["State"] == "running"


def test_snapshot_of_a_stopped_domain_and_revert(session):
    spec, _ = session.machine("snapoff")
    dom = session.define(spec)
    dom.snapshot_create("cold")
    dom.start()
    dom.snapshot_revert("cold")
    assert dom.state() == "shut off"


def test_real_daemon_errors_are_clear(virt, session, conn):
    spec, _ = session.machine("errs")
    dom = session.define(spec)
    with pytest.raises(virt.DomainExists):
        conn.define(spec)
    with pytest.raises(virt.InvalidState, match="start it first"):
        dom.suspend()
    with pytest.raises(virt.InvalidState):
        conn.call("suspend", dom.raw.suspend, subject=dom.name)  # libvirt's own check, translated
    with pytest.raises(virt.NoSuchDomain):
        conn.lookup(f"{RUN_PREFIX}missing")
    with pytest.raises(virt.NoSuchSnapshot):
        dom.snapshot_revert("never")
    with pytest.raises(virt.Rejected):
        conn.call("define", conn.raw.defineXML,
                  f"<domain type='kvm'><name>{RUN_PREFIX}bad</name><memory>65536</memory>"
                  "<devices><disk type='file' device='disk'><target dev='vda' bus='nonsense'/></disk></devices>"
                  "</domain>")
    assert f"{RUN_PREFIX}bad" not in virsh_names()


def test_session_cleans_up_real_domains_after_an_error(virt, conn):
    with pytest.raises(RuntimeError):
        with virt.Session(conn, prefix=RUN_PREFIX) as s:
            spec, vol = s.machine("boom")
            s.define(spec).start()
            raise RuntimeError("a cell failed")
    assert not any(n.startswith(f"{RUN_PREFIX}boom") for n in virsh_names())
    assert not os.path.exists(vol.path)


def test_preferring_qemu_system_picks_it_here(virt):
    from lab import host

    if not host.probe_kvm().usable:
        pytest.skip("KVM is not usable here")
    with virt.connect(prefer=[URI]) as c:
        assert c.uri == URI and c.driver == "QEMU" and c.chosen_by == "first preferred URI that answered"


@pytest.mark.root
def test_non_root_user_gets_clear_messages():
    """A user without /dev/kvm and libvirtd access: test:///default works, qemu:///system says why not."""
    if os.geteuid() != 0 or shutil.which("runuser") is None or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, runuser and Debian's /usr/bin/python3 to act as user 'nobody'")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import glob

    import libvirt as _lv

    # The checkout and the venv may sit in folders other users cannot read (a
    # mktemp clone, /root): copy `lab` and libvirt-python into a world-readable one.
    tmp = tempfile.mkdtemp(prefix="labtest-nonroot-")  # /tmp itself: pytest's tmp_path is private to root
    site = os.path.join(tmp, "site")
    shutil.copytree(os.path.join(repo, "lab"), os.path.join(site, "lab"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for f in glob.glob(os.path.join(os.path.dirname(_lv.__file__), "libvirt*")):
        if os.path.isfile(f):
            shutil.copy(f, site)
    subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
    script = os.path.join(tmp, "probe.py")
    with open(script, "w") as f:
        f.write(
        "from lab import virt\n"
        "c = virt.connect(prefer=['qemu:///system'])\n"
        "print('URI', c.uri)\n"
        "for a in c.tried: print('TRIED', a.uri, '|', a.reason)\n"
        "try:\n"
        "    virt.connect('qemu:///system')\n"
        "except virt.VirtError as e:\n"
        "    print('ERROR', type(e).__name__, '|', e)\n"
        )
    os.chmod(tmp, 0o755)
    os.chmod(script, 0o644)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site, "HOME": "/tmp"}
    try:
        proc = subprocess.run([shutil.which("runuser"), "-u", "nobody", "--", "/usr/bin/python3", script],
                              capture_output=True, text=True, env=env, timeout=60, cwd="/tmp")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "nothing on stderr, also for a refused user"
    out = proc.stdout
    assert "URI test:///default" in out
    assert re.search(r"TRIED qemu:///system \| KVM is not usable .*permission denied", out), out
    # The daemon answers but refuses: either a plain permission error, or (on a
    # machine without systemd/dbus, like the book's CI) polkit cannot be asked.
    assert "ERROR PermissionDenied" in out and "test:///default" in out.split("ERROR", 1)[1]


def test_volume_delete_survives_another_session_stopping_the_pool(virt, conn):
    """Sessions share the transient pool; one may stop it while another still has a volume."""
    pool = conn.pool()
    vol = pool.create_volume(virt.VolumeSpec(f"{RUN_PREFIX}race.qcow2", 1))
    try:
        pool.raw.destroy()  # what another session's release() could do at the wrong moment
        vol.delete()
        assert not os.path.exists(vol.path)
    finally:
        virt.remove_leftovers(conn, f"{RUN_PREFIX}race")
