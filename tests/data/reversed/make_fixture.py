"""Build the reversed-orderings fixture from the committed recording (run from the repository root).

    .venv/bin/python tests/data/reversed/make_fixture.py

Not a measurement: every number here is made up so that each comparison the
KVM, VMExit and virtio chapters word from data comes out the other way
(ioeventfd slower than a plain kick, Python faster than C, a guest loop close
to native, PV slower than HVM(エミュレーション), ...), on a host with another
back end (kvm_amd inside a VM: nested). tests/test_words_follow_data.py
builds the chapters with it and checks that the sentences change.
"""

import json
import shutil
from pathlib import Path

import pandas as pd

SRC = Path("data/measured/intel-8712aea8")
HOST = "amd-0fedcba9"
DST = Path("tests/data/reversed") / HOST


def main() -> None:
    if DST.exists():
        shutil.rmtree(DST)
    DST.mkdir(parents=True)
    # qemu-io unchanged: the virtio chapter's section on the real drivers reads it too
    names = ["provenance", "exits", "io", "native", "reference", "tour", "qemu-io"]
    desc = json.loads((SRC / "datapackage.json").read_text())
    desc["name"], desc["title"] = f"lab-measured-{HOST}", f"TEST FIXTURE (orderings reversed), host {HOST}"
    desc["resources"] = [r for r in desc["resources"] if r["name"] in names]
    desc.pop("migrations", None)
    (DST / "datapackage.json").write_text(json.dumps(desc, ensure_ascii=False, indent=2) + "\n")
    frames = {n: pd.read_csv(SRC / f"{n}.csv", dtype=str, keep_default_na=False) for n in names}
    for f in frames.values():
        f["host_id"] = HOST
    p = frames["provenance"]
    p["cpu_vendor"], p["cpu_model"] = "amd", "AMD EPYC (test fixture)"
    p["kvm_modules"], p["nested"] = "kvm kvm_amd", "true"
    ex = frames["exits"]
    cost = {"loop": 5.0, "cpuid": 3000.0, "pio_user": 2000.0, "mmio_user": 2100.0, "pio_ioeventfd": 4000.0,
            "hypercall": 1500.0}
    for i, r in ex.iterrows():
        c = cost[r["kind"]]
        ex.loc[i, ["status", "reason"]] = ["ok", ""]
        for col, v in {"cycles_per_exit": c, "cycles_q1": c * 0.95, "cycles_q3": c * 1.05, "cycles_min": c * 0.9,
                       "cycles_max": c * 1.2, "net_cycles_per_exit": c - cost["loop"], "ns_per_exit": c / 2.1,
                       "host_ns_per_exit": c / 2.0, "tsc_khz": 2100000.0}.items():
            ex.loc[i, col] = f"{v}"
    nat = frames["native"]
    nat[["cycles_per_iteration", "cycles_q1", "cycles_q3"]] = ["2.0", "1.9", "2.1"]
    ref = frames["reference"]
    py_c = {"loop": (5.0, 5.1), "cpuid": (2940.0, 3000.0), "pio_user": (12000.0, 15000.0),
            "mmio_user": (12500.0, 15500.0), "pio_ioeventfd": (3900.0, 4000.0)}
    for i, r in ref.iterrows():
        py, c = py_c[r["kind"]]
        ref.loc[i, ["python_cycles", "python_q1", "python_q3", "c_cycles", "c_q1", "c_q3"]] = [
            f"{py}", f"{py * 0.97}", f"{py * 1.03}", f"{c}", f"{c * 0.97}", f"{c * 1.03}"]
    io = frames["io"]
    for i, r in io.iterrows():
        b = int(r["batch"])
        rps = {"hvm": 50000.0, "pv": 20000.0, "virtio": 30000.0 if b == 1 else 10000.0}
        rps["virtio_ioeventfd"] = rps["virtio"] * 0.5
        v = rps[r["mode"]]
        io.loc[i, ["requests_per_s", "requests_per_s_q1", "requests_per_s_q3"]] = [f"{v}", f"{v * 0.9}", f"{v * 1.1}"]
    tour = frames["tour"]
    hc = tour["action"] == "hypercall_once"
    tour.loc[hc, ["outcome", "message"]] = ["ok", ""]
    for n, f in frames.items():
        f.to_csv(DST / f"{n}.csv", index=False)


if __name__ == "__main__":
    main()
