"""``python -m lab.virt``: which URI answers, and leftovers of killed runs.

    python -m lab.virt                      # which URI answers and why
    python -m lab.virt leftovers [--prefix labtest-] [--remove] [--uri URI]
"""

from __future__ import annotations

import argparse
import sys

from lab import virt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.virt", description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help=f"libvirt URI (default: ${virt.URI_ENV} or {virt.DEFAULT_URI})")
    sub = parser.add_subparsers(dest="command")
    left = sub.add_parser("leftovers", help="list (or remove) domains and volumes a run left behind")
    left.add_argument("--prefix", default=virt.TEST_PREFIX, help="name prefix (default %(default)s)")
    left.add_argument("--remove", action="store_true", help="destroy, undefine and delete them")
    args = parser.parse_args(argv)
    try:
        with virt.connect(args.uri) as conn:
            if args.command == "leftovers":
                if args.remove:
                    for line in virt.remove_leftovers(conn, args.prefix):
                        print(f"removed {line}")
                found = virt.leftovers(conn, args.prefix)
                print(f"{conn.uri}: domains {found['domains'] or 'none'}, volumes {found['volumes'] or 'none'}")
                return 1 if any(found.values()) else 0
            for key, value in conn.describe_rows():
                print(f"{key}: {value}")
            return 0
    except virt.VirtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
