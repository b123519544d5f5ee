"""Recordings a reader brings from their own machine: packed into one file, checked, added.

The path, in three commands:

1. ``python -m lab record`` on the reader's KVM host writes
   ``data/measured/<host-id>/`` (every benchmark the host can run);
2. ``python -m lab pack`` packs that folder into one file to send
   (:mod:`lab.contrib.archive`), with its checksum and a summary of what is in it;
3. ``python -m lab add <file>``, by a maintainer, runs every check
   (:mod:`lab.contrib.checks`: schema, provenance, host id, layout, ranges
   (:mod:`lab.contrib.ranges`), private text (:mod:`lab.contrib.private`),
   duplicates) and adds the recordings in one atomic step (:mod:`lab.contrib.add`).
"""
