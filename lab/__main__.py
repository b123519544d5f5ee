"""Command line of the book's laboratory: ``python -m lab <command>``.

Commands register themselves in :data:`COMMANDS` with a function that adds
their arguments and a function that runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from lab import __version__, host

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the stable JSON form")


def _probe_run(args: argparse.Namespace) -> int:
    result = host.probe()
    print(result.to_json() if args.json else probe_text(result))
    return 0


def probe_rows(p: host.Probe) -> list[tuple[str, str, str]]:
    """(item, value, why) rows in plain English; the book's Japanese table is lab.book.host.report_rows."""
    k, c, lv = p.kvm, p.cpu, p.libvirt
    rows = [
        ("cpu", f"{c.model or '?'} ({c.vendor or '?'})", c.reason or ""),
        ("vmx/svm flags", ", ".join(c.virt_flags) or "none", "shown, not trusted: KVM may work without them"),
        ("hypervisor bit", "yes" if c.hypervisor else "no",
         "yes: this kernel runs in a VM (KVM is nested only on kvm_intel/kvm_amd)"),
        ("kvm", "usable" if k.usable else "not usable", k.reason or f"opened {k.device}, API {k.api_version}, "
                                                                   f"created and closed an empty VM"),
    ]
    if (a := k.access) is not None:
        rows.append((a.device, f"{a.owner}:{a.group} {a.mode}", "Debian's udev rule gives root:kvm crw-rw----"))
        if a.qemu_can_open is not None:
            verdict = "can open it" if a.qemu_can_open else "cannot open it"
            rows.append((f"qemu as {a.qemu_user}:{a.qemu_group}", verdict,
                         f"fix, as root: {a.fix}" if a.fix else "libvirt's QEMU can use KVM"))
    rows += [(f"module {m.name}", f"nested={m.nested}" if m.nested is not None else "loaded",
              m.backend or m.nested_reason or "") for m in k.modules]
    if not k.modules:
        rows.append(("kvm modules", "none", k.modules_reason or ""))
    rows.append(("libvirt-python", lv.library_version or "missing", lv.reason or ""))
    rows += [(f"libvirt {u.uri}", f"{u.driver} {u.version}" if u.ok else "no answer", u.reason or "")
             for u in lv.uris]
    return rows


def probe_text(p: host.Probe) -> str:
    rows = probe_rows(p)
    width = max(len(r[0]) for r in rows)
    lines = [f"host {p.host_id}  kernel {p.kernel}  lab {p.lab_version}"]
    lines += [f"{item:<{width}}  {value}" + (f"  -- {why}" if why else "") for item, value, why in rows]
    return "\n".join(lines)


def _bench_args(p: argparse.ArgumentParser) -> None:
    from lab.bench import cli

    cli.bench_args(p)


def _bench_run(args: argparse.Namespace) -> int:
    from lab.bench import cli

    return cli.bench_run(args)


def _record_args(p: argparse.ArgumentParser) -> None:
    from lab.bench import cli

    cli.record_args(p)


def _record_run(args: argparse.Namespace) -> int:
    from lab.bench import cli

    return cli.record_run(args)


def _kit_args(p: argparse.ArgumentParser) -> None:
    from lab.kit import cli

    cli.add_args(p)


def _kit_run(args: argparse.Namespace) -> int:
    from lab.kit import cli

    return cli.run(args)


def _pack_args(p: argparse.ArgumentParser) -> None:
    from lab.contrib import cli

    cli.pack_args(p)


def _pack_run(args: argparse.Namespace) -> int:
    from lab.contrib import cli

    return cli.pack_run(args)


def _add_args(p: argparse.ArgumentParser) -> None:
    from lab.contrib import cli

    cli.add_args(p)


def _add_run(args: argparse.Namespace) -> int:
    from lab.contrib import cli

    return cli.add_run(args)


COMMANDS: dict[str, Command] = {
    "probe": ("what this machine offers: /dev/kvm, CPU, kvm modules, libvirt", _probe_args, _probe_run),
    "bench": ("run a benchmark on this host: python -m lab bench exits [--json] [--repeat N]", _bench_args, _bench_run),
    "kit": ("build the guest kit (Debian kernel + busybox) that QEMU guests boot: python -m lab kit build",
            _kit_args, _kit_run),
    "record": ("run the benchmarks and record them in data/measured/<host-id>/", _record_args, _record_run),
    "pack": ("pack this host's recordings into one file to send, with its checksum and a summary",
             _pack_args, _pack_run),
    "add": ("check a packed contribution and add its recordings to data/measured/", _add_args, _add_run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command builds its arguments, so a command's imports (pandas
    # for the benchmarks) are paid only when it runs: `probe` needs the stdlib alone.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_, add_args, _) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_)
        if name == chosen:
            add_args(sp)
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
