"""``python -m lab pack`` and ``python -m lab add``: a reader's recordings, sent and added."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab import datapackage, host, paths
from lab.bench import record_root
from lab.contrib import add as adding
from lab.contrib import archive
from lab.contrib.checks import CHECKS, Checked, ContributionError


def pack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", default=None,
                   help="the host folder to pack (default: <root>/<this host's id>)")
    p.add_argument("--root", default=None, help="folder of the recordings, as given to record (default data/measured)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="where to write the file (default ./lab-contribution-<host-id>.tar.gz)")


def pack_run(args: argparse.Namespace) -> int:
    if args.folder is not None:
        folder = Path(args.folder)
    else:
        folder = Path(args.root if args.root is not None else paths.MEASURED_DIR) / host.probe(libvirt_uris=()).host_id
    if not (folder / datapackage.DESCRIPTOR).is_file():
        print(f"error: {folder} holds no recordings ({datapackage.DESCRIPTOR}): record them first with "
              f"'python -m lab record{' --root ' + args.root if args.root else ''}'", file=sys.stderr)
        return 2
    try:
        packed = archive.pack(folder, args.output)
    except ContributionError as exc:
        print(f"error: not packed: {exc}", file=sys.stderr)
        return 1
    print("\n".join(pack_summary(packed)))
    return 0


def _facts(checked: Checked) -> list[str]:
    prov = checked.frames["provenance"]
    def one(column: str) -> str:
        values = sorted(set(prov[column]) - {""})
        return ", ".join(values) or "-"
    return [f"  host      {checked.host_id} (anonymised: CPU vendor and a hash of /etc/machine-id and the CPU model)",
            f"  CPU       {one('cpu_model')} ({one('cpu_vendor')}), {one('logical_cpus')} logical CPUs",
            f"  kernel    {one('kernel')}; runs in a VM: {one('runs_in_vm')}; KVM back end: {one('kvm_backend')}",
            f"  software  lab {one('lab_version')}, Python {one('python')}"]


def _resources(checked: Checked) -> list[str]:
    lines = []
    for name, frame in checked.frames.items():
        if name == "provenance":
            continue
        times = sorted(set(frame["recorded_at"]))
        when = times[0] if len(times) == 1 else f"{times[0]} to {times[-1]}"
        lines.append(f"  {name:<10} {len(frame):>4} row{'s' * (len(frame) != 1)}, {len(times)} "
                     f"recording{'s' * (len(times) != 1)}, {when}")
    n = len(checked.frames["provenance"])
    lines.append(f"  {'provenance':<10} {n:>4} rows: where and how each recording was made, with its command")
    return lines


def pack_summary(packed: archive.Packed) -> list[str]:
    """What the person reads before sending the file."""
    c = packed.checked
    lines = [f"packed {packed.path} ({packed.size:,} bytes)",
             f"sha256 {packed.sha256}  (also in {packed.path.name}.sha256)",
             "", "What is inside: the recordings of one machine, as 'python -m lab record' wrote them", *_facts(c),
             *_resources(c)]
    if packed.left_out:
        lines += ["Left out:", *[f"  {what}" for what in packed.left_out]]
    lines += [*[f"Note: {n.replace('migrated', 'python -m lab add migrates it')}" for n in c.notes
                if "older layout" in n],
              "", "Checked: no host name, user name or path is in the file (this machine's host and user names "
              f"were looked for too); the folder given to --root is written as {record_root.ROOT_PLACEHOLDER} "
              f"in every recorded command.",
              f"Send the file and its sha256 to the book's maintainers; they add it with "
              f"'python -m lab add {packed.path.name}'."]
    return lines


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a contribution packed by 'python -m lab pack' (lab-contribution-<host-id>.tar.gz)")
    p.add_argument("--root", default=None, help="folder of the recordings to add to (default data/measured)")
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help="the checksum the contributor sent (default: read from FILE.sha256 when it is there)")
    p.add_argument("--check", action="store_true", help="run every check, add nothing")


def add_run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    try:
        added = adding.add(path, args.root, sha256=args.sha256, dry_run=args.check)
    except ContributionError as exc:
        print(f"refused, nothing added: {exc}", file=sys.stderr)
        return 1
    except datapackage.DataError as exc:  # the destination, not the contribution
        print(f"error: nothing added: {exc}", file=sys.stderr)
        return 2
    c = added.checked
    print(f"{path.name}: sha256 {added.sha256}" + (
        f" (matches {'the one given' if args.sha256 else path.name + '.sha256'})" if added.expected else
        " (no checksum to compare with: compare it with the one the contributor sent)"))
    for name, what in CHECKS.items():
        print(f"  ok  {name:<10} {what}")
    for note in c.notes:
        print(f"      {note}")
    verb = "added" if added.written else "would add (--check: nothing written)"
    print(f"{verb}: {len(c.recordings)} recording(s) of host {c.host_id} -> {added.target}")
    return 0
