"""``python -m lab bench <kind>`` and ``python -m lab record``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from lab import datapackage, host, kvm
from lab.bench import BENCHES, harness, record_root


def bench_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_kind", required=True, metavar="KIND")
    for name, b in BENCHES.items():
        sp = sub.add_parser(name, help=b.help, description=b.help)
        sp.add_argument("--json", action="store_true", help="print one JSON object per measured kind")
        b.add_args(sp)


def _print_table(results) -> None:
    print(f"{'kind':<15} {'status':<11} {'cycles':>10} {'IQR':>19} {'ns':>9} {'host ns':>9}  note")
    for r in results:
        if r.status == "ok":
            iqr = f"{r.spread['q1']:.0f}-{r.spread['q3']:.0f}"
            net = r.extra.get("net_cycles_per_exit")
            note = f"net {net:.0f} cycles" if net is not None and r.kind != "loop" else r.extra.get("what", "")
            print(f"{r.kind:<15} {r.status:<11} {r.cycles_per_exit:>10.0f} {iqr:>19} {r.ns_per_exit:>9.0f} "
                  f"{r.host_ns_per_exit:>9.0f}  {note}")
        else:
            print(f"{r.kind:<15} {r.status:<11} {'-':>10} {'-':>19} {'-':>9} {'-':>9}  {r.reason}")
    ok = [r for r in results if r.status == "ok"]
    if ok:
        print(f"repeat {ok[0].repeat} x {ok[0].iterations} per kind; TSC {ok[0].tsc_khz:.0f} kHz "
              f"({ok[0].extra.get('tsc_source', '')}); mode {ok[0].extra.get('mode', '')}")


class CannotMeasure(Exception):
    """The host cannot run a benchmark (no /dev/kvm, no gcc, no guest kit, ...): the reason, in English."""


def _measure(b, args):
    """The results of benchmark ``b``; :class:`CannotMeasure` when this host cannot run it."""
    progress = harness.Progress(b.steps(args), label=b.name)
    try:
        return b.measure(args, progress)
    except (kvm.KvmUnavailable, *b.unavailable()) as exc:
        raise CannotMeasure(str(exc)) from exc
    finally:
        progress.close()


def bench_run(args: argparse.Namespace) -> int:
    b = BENCHES[args.bench_kind]
    try:
        results = _measure(b, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CannotMeasure as exc:
        print(f"cannot measure: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(b.as_json(results), ensure_ascii=False, indent=2))
    else:
        (b.show or _print_table)(results)
    return 0 if b.ok(results) else 1


def record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", choices=sorted(BENCHES), action="append",
                   help="record only this benchmark (repeatable; default: all)")
    p.add_argument("--root", default=None, help="folder of the recordings (default data/measured)")
    p.add_argument("--replace", action="store_true",
                   help="replace this host's earlier recordings of the benchmark instead of adding to them")
    seen: set[str] = set()
    for b in BENCHES.values():  # every benchmark's options; each keeps its own default
        group = argparse.ArgumentParser(add_help=False)
        b.add_args(group)
        for action in group._actions:
            if action.dest not in seen:
                action.default = argparse.SUPPRESS
                p._add_action(action)
                seen.add(action.dest)


def _bench_namespace(b, args: argparse.Namespace) -> argparse.Namespace:
    """The benchmark's own defaults, overridden by the options given to ``record``."""
    own = argparse.ArgumentParser(add_help=False)
    b.add_args(own)
    ns = own.parse_args([])
    for key, value in vars(args).items():
        setattr(ns, key, value)
    return ns


def record_run(args: argparse.Namespace) -> int:
    """Record every benchmark asked for (default: all) that this host can run.

    The folder is checked first, so that a measurement is never made only to
    be lost. A benchmark the host cannot run is named with its reason and the
    others go on; so does one that fails. Exit status 0 when every benchmark
    asked for by name was recorded (without ``--only``: at least one was, and
    the rest could not run here), 1 otherwise, 2 when the folder is refused.
    """
    probe = host.probe(libvirt_uris=())
    try:
        root = record_root.check_root(args.root, probe.host_id)
    except datapackage.DataError as exc:
        print(f"error: nothing measured: {exc}", file=sys.stderr)
        return 2
    command = record_root.hide_root("python -m lab record " + shlex.join(sys.argv[2:]))
    recorded: list[str] = []
    skipped: list[tuple[str, str]] = []  # (benchmark, why it did not run here)
    failed: list[tuple[str, str]] = []   # (benchmark, what went wrong)
    status = 0
    for name in args.only or list(BENCHES):
        b = BENCHES[name]
        print(f"=== {name}", flush=True)
        try:
            results = _measure(b, _bench_namespace(b, args))
            prov = harness.provenance(probe, command=command, **b.provenance(results))
            path = harness.record(name, b.to_frame(results, prov), b.fields, prov, root=root,
                                  description=b.description, replace=args.replace)
        except CannotMeasure as exc:
            print(f"not recorded: {name} cannot run on this host: {exc}", flush=True)
            skipped.append((name, str(exc)))
            continue
        except Exception as exc:  # one failing benchmark must not lose the others (named below)
            print(f"not recorded: {name} failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        (b.show or _print_table)(results)
        print(f"recorded {name} -> {path}", flush=True)
        recorded.append(name)
        status |= 0 if b.ok(results) else 1
    print()
    print(f"recorded in {harness.host_dir(probe.host_id, root)}: {', '.join(recorded) or 'nothing'}")
    for name, why in skipped:
        print(f"not recorded, cannot run here: {name}: {why}")
    for name, why in failed:
        print(f"not recorded, failed: {name}: {why}")
    if failed or not recorded or (args.only and skipped):
        status = 1
    return status
