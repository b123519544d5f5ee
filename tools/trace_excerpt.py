"""Cut a small test excerpt out of a full QEMU trace of the disk-trap guest.

Keeps: the last two lines SeaBIOS wrote to port 0x402 (the pitfall: they share
the port with the guest's markers), a few accesses from the kernel's boot
(outside every phase: must be ignored), and everything from the guest's
first marker on. Usage: python tools/trace_excerpt.py FULL.log > EXCERPT.log
"""

import re
import sys

DEBUGCON = re.compile(r"name 'isa-debugcon'")
VALUE = re.compile(r"value 0x([0-9a-f]+)")


def main(path: str) -> None:
    lines = open(path, encoding="latin-1").readlines()
    marks = [(i, int(VALUE.search(line)[1], 16)) for i, line in enumerate(lines)
             if DEBUGCON.search(line) and "memory_region_ops_write" in line]
    text = bytes(v for _, v in marks)
    first = text.index(b"@lab ")
    newlines = [k for k in range(first) if text[k] == 0x0A]
    seabios_from = newlines[-2] + 1 if len(newlines) >= 2 else 0
    start_line = marks[first][0]
    keep = [lines[marks[k][0]] for k in range(seabios_from, first)]
    boot = [line for line in lines[marks[first - 1][0] + 1:start_line] if "isa-debugcon" not in line][:40]
    sys.stdout.writelines(keep + boot + lines[start_line:])


if __name__ == "__main__":
    main(sys.argv[1])
