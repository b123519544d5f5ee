"""``python -m lab kit build|status [--profile NAME]``."""

from __future__ import annotations

import argparse
import sys

from lab.kit import builder as kb
from lab.kit.profiles import PROFILES


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("build", "status"),
                   help="build: build the kit unless the same one is built (idempotent); status: show it")
    p.add_argument("--profile", choices=sorted(PROFILES), default="disk-trap")
    p.add_argument("--root", default=None, help=f"kit folder (default ${kb.ROOT_ENV} or {kb.DEFAULT_ROOT})")
    p.add_argument("--force", action="store_true", help="rebuild even if the same kit is built")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "status":
            print(kb.find(args.profile, args.root).describe())
            return 0
        kit, now = kb.build(args.profile, args.root, force=args.force, log=print)
    except kb.KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(("built " if now else "already built: ") + kit.describe())
    return 0
