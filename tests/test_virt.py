"""lab.virt against libvirt's in-process test driver (test:///default): always runs.

Every lifecycle operation and state transition, snapshots, storage, every
error case, cleanup after an error. Domains and volumes are named
``labtest-...``; the module ends by checking that none is left.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import say

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed (make setup)")

from lab import virt  # noqa
from lab.book import virt_tables  # noqa: E402
from lab.paths import REPO_ROOT  # noqa: E402
from lab.virt import connection as vconn  # noqa: E402
from lab.virt import errors  # noqa: E402
from lab.virt.spec import Disk, DomainSpec  # noqa: E402

TEST_URI = "test:///default"


@pytest.fixture(autouse=True)
def _no_uri_env(monkeypatch):
    monkeypatch.delenv(virt.URI_ENV, raising=False)


@pytest.fixture(scope="module", autouse=True)
def _nothing_left_behind(request):
    yield
    with virt.connect(TEST_URI) as conn:
        left = virt.leftovers(conn, virt.TEST_PREFIX)
        say(request, f"[lab.virt] test_virt.py ran against {conn.uri} (driver {conn.driver}, "
                     f"libvirt {conn.library_version}); left behind: {left}")
        assert left == {"domains": [], "volumes": []}, f"tests left these on {TEST_URI}: {left}"


@pytest.fixture
def conn():
    with virt.connect(TEST_URI) as c:
        yield c


@pytest.fixture
def session(conn):
    s = virt.Session(conn, prefix=virt.TEST_PREFIX)
    yield s
    s.close()


def small(s: virt.Session, stem: str = "dom", **kw) -> DomainSpec:
    return DomainSpec(s.name(stem), **kw)


# --------------------------------------------------------------------------- connection


def test_default_uri_is_the_test_driver(conn):
    c = virt.connect()
    try:
        assert c.uri == TEST_URI and c.driver == "TEST" and c.is_test
        assert c.chosen_by.startswith("default")
        assert [a.uri for a in c.tried] == [TEST_URI]
    finally:
        c.close()


def test_argument_beats_environment_beats_default(monkeypatch):
    assert virt.resolve_uri(None) == (None, "default")
    monkeypatch.setenv(virt.URI_ENV, "qemu:///session")
    assert virt.resolve_uri(None) == ("qemu:///session", f"environment variable {virt.URI_ENV}")
    assert virt.resolve_uri("test:///default") == ("test:///default", "argument")
    monkeypatch.setenv(virt.URI_ENV, TEST_URI)
    with virt.connect() as c:
        assert c.uri == TEST_URI and "LAB_LIBVIRT_URI" in c.chosen_by


def test_uri_env_is_the_one_lab_host_defines():
    from lab import host

    assert virt.URI_ENV == host.LIBVIRT_URI_ENV and virt.DEFAULT_URI == host.DEFAULT_LIBVIRT_URIS[0]


def test_preferred_uri_that_does_not_answer_falls_back_with_its_reason():
    dead = "qemu:///system?socket=/nonexistent/labtest-sock"
    with virt.connect(prefer=[dead], require_kvm=False) as c:
        assert c.uri == TEST_URI and c.chosen_by.startswith("fallback")
        (attempt, used) = c.tried
        assert attempt.uri == dead and "no such file or directory" in attempt.reason.lower()
        assert "libvirt-daemons.sh" in attempt.reason
        assert used == virt.Attempt(TEST_URI, None)
        table = virt_tables.describe(c)
        assert table.loc["URI", "値"] == TEST_URI and f"試した {dead}" in table.index


def test_prefer_skips_qemu_when_kvm_is_unusable(monkeypatch):
    from lab import host

    fake = host.KvmInfo("/dev/kvm", False, False, None, False, False, "no /dev/kvm here (faked)")
    monkeypatch.setattr(host, "probe_kvm", lambda *a, **k: fake)
    with virt.connect(prefer=["qemu:///system"]) as c:
        assert c.uri == TEST_URI
        assert "KVM is not usable" in c.tried[0].reason and "faked" in c.tried[0].reason


def test_explicit_uri_without_daemon_is_a_clear_error():
    with pytest.raises(virt.DaemonNotRunning) as info:
        virt.connect("qemu:///system?socket=/nonexistent/labtest-sock")
    msg = str(info.value)
    assert "connect failed on qemu:///system" in msg and "tools/libvirt-daemons.sh" in msg
    assert "test:///default" in msg


def test_unknown_driver_is_a_virt_error():
    with pytest.raises(virt.VirtError, match="connect failed on nosuchdriver:///x"):
        virt.connect("nosuchdriver:///x")


def test_missing_libvirt_python_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "libvirt", None)
    vconn._reset_module_cache()
    try:
        with pytest.raises(virt.LibvirtMissing, match="make setup"):
            virt.connect()
    finally:
        monkeypatch.undo()
        vconn._reset_module_cache()
    with virt.connect() as c:  # and it recovers once the module is back
        assert c.uri == TEST_URI


def test_libvirt_errors_never_reach_stderr(conn, capfd):
    with pytest.raises(virt.NoSuchDomain):
        conn.lookup("labtest-does-not-exist")
    with pytest.raises(virt.DaemonNotRunning):
        virt.connect("qemu:///system?socket=/nonexistent/labtest-sock")
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_error_codes_match_the_installed_libvirt():
    for name in dir(errors):
        if name.startswith("VIR_ERR_"):
            assert getattr(errors, name) == getattr(libvirt, name), name


@pytest.mark.parametrize("code, message, op, cls", [
    (errors.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/x': Permission denied", "connect",
     errors.PermissionDenied),
    (errors.VIR_ERR_AUTH_FAILED, "authentication failed: access denied by policy", "connect", errors.PermissionDenied),
    (errors.VIR_ERR_NO_CONNECT, "no connection driver available", "connect", errors.DaemonNotRunning),
    (1, "internal error: Unable to get system bus connection: Could not connect: No such file or directory",
     "connect", errors.PermissionDenied),
    (errors.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/x': Connection refused", "connect",
     errors.DaemonNotRunning),
    (errors.VIR_ERR_ACCESS_DENIED, "access denied: 'domain' 'start'", "start", errors.PermissionDenied),
    (errors.VIR_ERR_NO_DOMAIN, "Domain not found", "lookup", errors.NoSuchDomain),
    (errors.VIR_ERR_NO_DOMAIN_SNAPSHOT, "Domain snapshot not found", "snapshot-lookup", errors.NoSuchSnapshot),
    (errors.VIR_ERR_DOM_EXIST, "domain 'a' already exists", "define", errors.DomainExists),
    (errors.VIR_ERR_OPERATION_FAILED, "domain 'a' already exists with uuid x", "define", errors.DomainExists),
    (errors.VIR_ERR_OPERATION_INVALID, "domain is not running", "suspend", errors.InvalidState),
    (errors.VIR_ERR_STORAGE_VOL_EXIST, "storage volume 'v' exists already", "volume-create", errors.StorageError),
    (errors.VIR_ERR_NO_STORAGE_POOL, "Storage pool not found", "pool-lookup", errors.StorageError),
    (errors.VIR_ERR_NO_SUPPORT, "this function is not supported", "snapshot-create", errors.Unsupported),
    (errors.VIR_ERR_XML_ERROR, "XML error: bad", "define", errors.Rejected),
    (errors.VIR_ERR_CONFIG_UNSUPPORTED, "unsupported configuration: KVM is not available", "start", errors.Rejected),
    (1, "something odd", "start", errors.VirtError),
])
def test_classify(code, message, op, cls):
    got, hint = errors.classify(code, message, op)
    assert got is cls and hint


def test_translate_keeps_the_libvirt_details(conn):
    try:
        conn.raw.lookupByName("labtest-nope")
    except libvirt.libvirtError as exc:
        err = errors.translate(exc, operation="lookup", uri=conn.uri, subject="labtest-nope")
    assert isinstance(err, virt.NoSuchDomain)
    assert err.libvirt_code == libvirt.VIR_ERR_NO_DOMAIN and err.uri == TEST_URI and err.operation == "lookup"
    assert "lookup 'labtest-nope' failed on test:///default" in str(err) and "virsh list --all" in str(err)


# --------------------------------------------------------------------------- lifecycle


def test_every_lifecycle_operation_and_state(session):
    conn = session.conn
    dom = session.define(small(session, nic="virtio"))
    assert dom.state() == "shut off" and not dom.info().id
    assert dom.name in [d.name for d in conn.domains("inactive")]
    assert dom.name not in [d.name for d in conn.domains("running")]
    dom.start()
    info = dom.info()
    assert info.state == "running" and info.id and info.vcpus == 1 and info.max_memory_kib == 64 * 1024
    assert info.cpu_time_s is None, "the test driver has no CPU time; the book must not show its clock"
    assert info.persistent
    assert dom.name in [d.name for d in conn.domains("running")]
    assert dom.suspend().state() == "paused"
    assert dom.resume().state() == "running"
    assert dom.reboot().state() == "running"
    assert dom.shutdown().state() == "shut off"  # the test driver obeys at once
    dom.start()
    assert dom.destroy().state() == "shut off"
    table = conn.domain_table("all", prefix=virt.TEST_PREFIX)
    assert list(table.columns) == ["Id", "Name", "State", "CPU time (s)"] and dom.name in set(table["Name"])
    dom.undefine()
    with pytest.raises(virt.NoSuchDomain):
        conn.lookup(dom.name)
    ops = [s.operation for s in session.trace]
    assert ops == ["define", "start", "suspend", "resume", "reboot", "shutdown", "start", "destroy", "undefine"]
    frame = session.trace_frame()
    assert list(frame["libvirt API"][:3]) == ["virDomainDefineXML", "virDomainCreate", "virDomainSuspend"]
    assert list(frame["state"]) == ["shut off", "running", "paused", "running", "running", "shut off",
                                    "running", "shut off", "(undefined)"]


def test_spec_reads_back_from_libvirt(session):
    vol = session.volume("rb")
    s = DomainSpec(session.name("rb"), memory_mib=96, vcpus=2, nic="e1000", disks=(Disk(vol.path, bus="sata"),))
    dom = session.define(s)
    back = dom.spec()
    assert back.replace(machine=None) == s
    assert "<domain" in dom.xml()


@pytest.mark.parametrize("op, state_setup, state", [
    ("suspend", [], "shut off"),
    ("resume", [], "shut off"),
    ("resume", ["start"], "running"),
    ("start", ["start"], "running"),
    ("start", ["start", "suspend"], "paused"),
    ("destroy", [], "shut off"),
    ("shutdown", [], "shut off"),
    ("reboot", ["start", "suspend"], "paused"),
    ("undefine", ["start"], "running"),
])
def test_invalid_state_is_refused_with_a_clear_message(session, op, state_setup, state):
    dom = session.define(small(session))
    for step in state_setup:
        getattr(dom, step)()
    with pytest.raises(virt.InvalidState) as info:
        getattr(dom, op)()
    msg = str(info.value)
    assert f"{op} {dom.name!r} refused on {TEST_URI}" in msg and f"the domain is {state!r}" in msg
    assert "allowed in:" in msg
    assert dom.state() == state, "a refused operation changes nothing"


def test_libvirt_own_state_error_is_translated(session):
    dom = session.define(small(session)).start()
    with pytest.raises(virt.InvalidState, match="already running|not valid"):
        session.conn.call("start", dom.raw.create, subject=dom.name)  # bypass our own check


def test_define_twice_is_domain_exists_and_changes_nothing(session):
    s = small(session)
    session.define(s)
    before = [d.name for d in session.conn.domains()]
    with pytest.raises(virt.DomainExists, match="already defined"):
        session.conn.define(s.replace(memory_mib=128))
    assert [d.name for d in session.conn.domains()] == before
    assert session.conn.lookup(s.name).info().max_memory_kib == 64 * 1024


def test_define_takes_only_a_spec(conn):
    with pytest.raises(TypeError, match="DomainSpec"):
        conn.define("<domain/>")


def test_no_such_domain(conn):
    with pytest.raises(virt.NoSuchDomain, match="virsh list --all"):
        conn.lookup("labtest-missing")
    with pytest.raises(virt.SpecError):
        conn.lookup("bad name")
    with pytest.raises(ValueError, match="which must be"):
        conn.domains("sleeping")


# --------------------------------------------------------------------------- snapshots


def test_snapshots_create_list_revert_delete(session):
    dom = session.define(small(session)).start()
    dom.snapshot_create("before", description="running, fresh")
    dom.suspend()
    dom.snapshot_create("paused")
    assert dom.snapshots() == ["before", "paused"]
    dom.snapshot_revert("before")
    assert dom.state() == "running"
    dom.snapshot_delete("paused")
    assert dom.snapshots() == ["before"]
    with pytest.raises(virt.InvalidState, match="already has a snapshot"):
        dom.snapshot_create("before")
    with pytest.raises(virt.NoSuchSnapshot, match="snapshot-list"):
        dom.snapshot_revert("never")
    with pytest.raises(virt.NoSuchSnapshot):
        dom.snapshot_delete("never")
    with pytest.raises(virt.SpecError):
        dom.snapshot_create("no spaces please")
    dom.destroy()
    dom.undefine()  # snapshot metadata goes with it
    with pytest.raises(virt.NoSuchDomain):
        session.conn.lookup(dom.name)


# --------------------------------------------------------------------------- storage


def test_qcow2_volume_in_the_pool(session):
    vol = session.volume("disk", capacity_mib=32)
    info = vol.info()
    assert info["format"] == "qcow2" and info["capacity_bytes"] == 32 * 1024**2
    assert vol.name == f"{session.name('disk')}.qcow2" and vol.path.endswith(vol.name)
    pool = session.pool()
    assert pool.name == "default-pool" and not pool.owned
    assert vol.name in pool.volume_names()
    with pytest.raises(virt.StorageError, match="already has it"):
        pool.create_volume(virt.VolumeSpec(vol.name, 1))


def test_named_pool_errors(conn):
    with pytest.raises(virt.StorageError, match="pool-list"):
        conn.pool("labtest-no-such-pool")


def test_machine_creates_volume_and_spec_together(session):
    s, vol = session.machine("m", nic="virtio")
    assert s.disks[0].path == vol.path and s.disks[0].bus == "virtio" and s.nic == "virtio"
    dom = session.define(s).start()
    assert dom.state() == "running"


def test_machine_with_a_bad_spec_creates_nothing(session):
    before = session.pool().volume_names()
    with pytest.raises(virt.SpecError):
        session.machine("bad", bus="scsi")
    with pytest.raises(virt.SpecError):
        session.machine("bad", memory_mib=1)
    assert session.pool().volume_names() == before and session.volumes == []


# --------------------------------------------------------------------------- cleanup


def _ours(conn, prefix):
    found = virt.leftovers(conn, prefix)
    return found["domains"] + found["volumes"]


def test_session_cleans_up_after_an_error(conn):
    with pytest.raises(RuntimeError, match="cell failed"):
        with virt.Session(conn, prefix=virt.TEST_PREFIX) as s:
            spec, _vol = s.machine("crash")
            dom = s.define(spec).start()
            dom.suspend()
            dom.snapshot_create("snap")
            raise RuntimeError("cell failed")
    assert _ours(conn, f"{virt.TEST_PREFIX}crash-{s.token}") == []
    assert any("destroyed" in line for line in s.cleaned) and any("deleted" in line for line in s.cleaned)


def test_session_close_is_idempotent_and_reports(conn):
    s = virt.Session(conn, prefix=virt.TEST_PREFIX)
    s.define(small(s)).start()
    s.volume("v")
    done = s.close()
    assert [line.split(":")[1].strip() for line in done] == ["destroyed", "undefined", "deleted"]
    assert s.close() == []
    assert list(s.cleaned_frame()["cleanup"]) == done


def test_cleanup_tolerates_what_the_notebook_already_removed(session):
    dom = session.define(small(session))
    vol = session.volume("gone")
    dom.undefine()
    vol.delete()
    assert sorted(session.cleanup()) == sorted([f"domain {dom.name}: already gone", f"volume {vol.name}: already gone"])


def test_cleanup_failure_names_what_is_left_and_how_to_remove_it(session, monkeypatch):
    dom = session.define(small(session)).start()

    def refuse(self):
        raise virt.VirtError("undefine refused (simulated)")

    monkeypatch.setattr(virt.Domain, "undefine", refuse)
    with pytest.raises(virt.CleanupError) as info:
        session.cleanup()
    msg = str(info.value)
    assert dom.name in msg and f"virsh -c {TEST_URI} undefine {dom.name}" in msg
    monkeypatch.undo()
    virt.remove_leftovers(session.conn, dom.name)
    assert _ours(session.conn, dom.name) == []


def test_cleanup_error_during_an_exception_is_attached_as_a_note(conn, monkeypatch):
    def refuse(self):
        raise virt.VirtError("undefine refused (simulated)")

    with pytest.raises(RuntimeError) as info:
        with virt.Session(conn, prefix=virt.TEST_PREFIX) as s:
            s.define(small(s, "note"))
            monkeypatch.setattr(virt.Domain, "undefine", refuse)
            raise RuntimeError("original")
    assert str(info.value) == "original"
    assert any("cleanup left these behind" in n for n in info.value.__notes__)
    monkeypatch.undo()
    virt.remove_leftovers(conn, s.name("note"))


def test_session_prefix_must_be_recognizable(conn):
    with pytest.raises(ValueError, match="prefix"):
        virt.Session(conn, prefix="labtest")


def test_leftovers_cli(conn, capsys):
    from lab.virt.__main__ import main

    s = virt.Session(conn, prefix=virt.TEST_PREFIX)
    dom = s.define(small(s, "cli"))
    s.volume("cli")
    prefix = f"{virt.TEST_PREFIX}cli-{s.token}"
    assert main(["--uri", TEST_URI, "leftovers", "--prefix", prefix]) == 1
    assert dom.name in capsys.readouterr().out
    assert main(["--uri", TEST_URI, "leftovers", "--prefix", prefix, "--remove"]) == 0
    out = capsys.readouterr().out
    assert f"removed domain {dom.name}" in out and "domains none, volumes none" in out
    s.cleanup()
    assert main(["--uri", TEST_URI]) == 0 and "URI: test:///default" in capsys.readouterr().out
    assert main(["--uri", "qemu:///system?socket=/nonexistent/x"]) == 2
    assert "tools/libvirt-daemons.sh" in capsys.readouterr().err


# --------------------------------------------------------------------------- data


def test_operations_agree_with_the_mapping_table():
    frame = virt.load_mapping().set_index("operation")
    for op, (virsh, api) in virt.OPERATIONS.items():
        assert op in frame.index, f"{op} missing from data/libvirt/api_mapping.csv"
        assert frame.loc[op, "virsh"] == virsh and frame.loc[op, "libvirt_api"] == api, op


def test_mapping_python_methods_exist_in_libvirt_python():
    for method in virt.load_mapping()["python_method"]:
        cls, name = method.split(".")
        assert hasattr(getattr(libvirt, cls), name), method


def test_every_cited_key_is_in_references_bib():
    bib = (REPO_ROOT / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    cited = {k for ks in virt.load_mapping()["sources"] for k in ks.split(";")}
    cited |= set(virt.load_timeline()["source"])
    assert cited <= keys, f"not in references.bib: {sorted(cited - keys)}"


def test_mapping_table_for_the_book():
    table = virt.mapping_table()
    assert table.index.name == "操作"
    assert list(table.columns) == ["virsh", "libvirt API", "AWS CLI", "OpenStack CLI", "注"]
    assert table.loc["suspend", "AWS CLI"] == "- (なし)"
    assert table.loc["start", "OpenStack CLI"] == "= openstack server start"
    assert table.loc["undefine", "AWS CLI"].startswith("≈ ")


def test_bad_mapping_data_is_a_load_error(tmp_path):
    from lab.datapackage import DataError

    src = Path(virt.mapping.PACKAGE_DIR)
    for f in ("datapackage.json", "timeline.csv"):
        (tmp_path / f).write_text((src / f).read_text(encoding="utf-8"), encoding="utf-8")
    rows = (src / "api_mapping.csv").read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace(",similar,", ",maybe,", 1)
    (tmp_path / "api_mapping.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="aws_correspondence"):
        virt.load_mapping(tmp_path)
