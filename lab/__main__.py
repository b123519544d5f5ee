"""Command line of the book's laboratory: ``python -m lab <command>``.

Commands register themselves in :data:`COMMANDS` with a function that adds
their arguments and a function that runs them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from lab import __version__

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the stable JSON form")


def _probe_run(args: argparse.Namespace) -> int:
    from lab import host

    result = host.probe()
    print(result.to_json() if args.json else host.report_text(result))
    return 0


COMMANDS: dict[str, Command] = {
    "probe": ("what this machine offers: /dev/kvm, CPU, kvm modules, libvirt", _probe_args, _probe_run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
